"""The API key stays in the kernel, and in the kernel out of sight.

For every backend a conversation runs real turns (over loopback HTTP to the
emulator where there is a network), failed turns, a turn typed in the widget,
a save and both exports, with every logger at DEBUG; then the key is looked for
everywhere a person or a tool could come across it: reprs, the objects reachable
through ``vars()`` and ``__slots__`` (what a debugger's variable view or
JupyterLab's variable inspector walks), pickles, files, exports, log records,
exception texts and the widget's state and messages.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import json
import logging
import pickle
import traceback
import types
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from test_conversation_fakes import FakeProvider, make_image
from test_widget import Page, wait_idle
from visionchat._secret import Secret
from visionchat.conversation import Conversation
from visionchat.errors import APIError, ServerError
from visionchat.providers import _http
from visionchat.providers.oneminai import OneMinAIProvider
from visionchat.providers.openai import OpenAIProvider
from visionchat.testing import Emulator
from visionchat.widget import ChatWidget

KEY = "sk-vc-SECRET-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
RED = make_image((220, 20, 20), (64, 48))
BLUE = make_image((20, 20, 220), (80, 60))
HTTP_BACKENDS = ("1min", "1min-legacy", "1min-env", "openai")
BACKENDS = (*HTTP_BACKENDS, "offline", "custom")


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    """The plugin's emulator (fresh state per test), answering to this module's key."""
    emulator.api_key = KEY
    return emulator


def conversation(backend: str, emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Conversation:
    for var in ("ONEMIN_API_KEY", "ONE_MIN_AI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    if backend == "1min":
        return Conversation("gpt-4o", provider="1min", api_key=KEY, base_url=emu.base_url)
    if backend == "1min-legacy":
        return Conversation(
            "gpt-4o", provider="1min", api_key=KEY, base_url=emu.base_url, api="legacy"
        )
    if backend == "1min-env":
        monkeypatch.setenv("ONEMIN_API_KEY", KEY)
        monkeypatch.setenv("ONEMIN_BASE_URL", emu.base_url)
        return Conversation("gpt-4o")
    if backend == "openai":
        return Conversation("gpt-4o", provider="openai", api_key=KEY, base_url=emu.base_url + "/v1")
    if backend == "offline":
        monkeypatch.setenv("VISIONCHAT_OFFLINE_WPS", "0")
        return Conversation(provider="offline", api_key=KEY)
    return Conversation("gpt-4o", provider=FakeProvider(keeps_history=True), api_key=KEY)


# -- looking for the key ---------------------------------------------------------

# Not walked: classes and modules (shared by everyone), and tracebacks: their
# frames' variables are checked as a verbose traceback prints them (below).
_OPAQUE = (type, types.ModuleType, types.FrameType, types.TracebackType, types.CodeType)


def _children(obj: object) -> list[tuple[str, object]]:
    """What a variable inspector shows under ``obj``: attributes and items, labelled."""
    out: list[tuple[str, object]] = []
    if isinstance(obj, dict):
        for _ in range(5):  # engine-thread dicts may change while being copied
            with contextlib.suppress(RuntimeError):
                items = list(obj.items())
                break
        else:
            raise AssertionError(f"could not copy a dict that keeps changing: {obj!r:.80}")
        out += [(f"<key {i}>", k) for i, (k, _v) in enumerate(items)]
        out += [(f"[{k!r:.40}]", v) for k, v in items]
    elif isinstance(obj, list | tuple | set | frozenset | deque):
        out += [(f"[{i}]", x) for i, x in enumerate(list(obj))]
    if isinstance(obj, types.MethodType):
        out.append((".__self__", obj.__self__))
    if isinstance(obj, types.FunctionType):  # closures and defaults, not module globals
        out += [(".<closure>", c.cell_contents) for c in obj.__closure__ or ()]
        out += [(".<default>", d) for d in obj.__defaults__ or ()]
        out += [(".<default>", d) for d in (obj.__kwdefaults__ or {}).values()]
    with contextlib.suppress(TypeError):  # no __dict__
        out.append((".__dict__", vars(obj)))
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            attr = f"_{cls.__name__.lstrip('_')}{name}" if name.startswith("__") else name
            with contextlib.suppress(AttributeError):  # an empty slot
                out.append((f".{attr}", object.__getattribute__(obj, attr)))
    return out


def leaks_in_graph(*roots: object) -> tuple[list[str], set[str]]:
    """Where the key is reachable from ``roots`` (paths of attributes and items),
    and the names of the types the walk went through."""
    seen: dict[int, object] = {}
    stack: list[tuple[str, object]] = [(f"root{i}", r) for i, r in enumerate(roots)]
    found: list[str] = []
    while stack:
        path, obj = stack.pop()
        if isinstance(obj, str | bytes | bytearray):  # every path to the key is reported
            if (KEY if isinstance(obj, str) else KEY.encode()) in obj:
                found.append(path)
            continue
        if id(obj) in seen or isinstance(obj, _OPAQUE):
            continue
        seen[id(obj)] = obj  # kept alive, so ids stay unique during the walk
        stack += [(path + label, child) for label, child in _children(obj)]
    return found, {type(obj).__name__ for obj in seen.values()}


def exception_texts(exc: BaseException, *, with_variables: bool = True) -> str:
    """The error as shown, and as a verbose traceback shows it: every frame's variables
    (IPython's ``%xmode Verbose``, ``pytest -l``, error trackers that capture locals)."""
    shown = [f"{exc}\n{exc!r}\n", *traceback.format_exception(exc)]
    if with_variables:
        shown += traceback.TracebackException.from_exception(exc, capture_locals=True).format()
    return "".join(shown)


def pickle_outcome(obj: object) -> str:
    """The pickle's bytes when it pickles, the error's text when it refuses."""
    try:
        return repr(pickle.dumps(obj))
    except Exception as exc:
        return exception_texts(exc)


# -- the whole journey, per backend -------------------------------------------------


def run_everything(
    backend: str, emu: Emulator, conv: Conversation, tmp_path: Path
) -> tuple[dict[str, str], list[object]]:
    """Every path a key could leak through; returns (surface name -> text, objects)."""
    widget = ChatWidget(conv)
    page = Page(widget)
    surfaces: dict[str, str] = {}
    errors: list[BaseException] = []
    model = conv.model

    reply = conv.ask("what is this?", RED, show=False)
    assert reply.text and reply.error is None
    page.do({"type": "submit", "text": "and from the page?"})
    wait_idle(widget)
    assert conv.messages[-1].text and conv.messages[-1].error is None

    # Failed turns: the key rejected (401, never retried) and a stream that errs.
    if backend in HTTP_BACKENDS:
        faults: list[dict[str, Any]] = [
            {"kind": "status", "status": 401, "body": {"error": {"message": "Invalid API key"}}},
            # the legacy API streams raw text, with no way to say "error": it breaks off
            {"kind": "cut" if backend == "1min-legacy" else "error_event", "after_chunks": 1},
        ]
        for fault in faults:  # one at a time: a request takes every fault queued for it
            emu.add_fault(**fault)
            with pytest.raises(APIError) as info:
                conv.ask("will this fail?", BLUE, show=False)
            errors.append(info.value)
        assert "API key" in str(errors[0])
    elif backend == "custom":
        fake = conv.provider
        assert isinstance(fake, FakeProvider)
        fake.fail_after, fake.fail_with = 2, ServerError("The server failed; try again.")
        with pytest.raises(ServerError) as failed:
            conv.ask("fails", BLUE, show=False)
        errors.append(failed.value)
        fake.fail_after = None
    assert conv.model == model

    branch = conv.fork()
    twin = copy.deepcopy(conv)
    twin.ask("in the copy", show=False)  # the copy keeps working with the key

    surfaces["repr/str"] = "\n".join(
        f"{x!r}\n{x!s}"
        for x in (conv, conv.provider, reply, branch, twin, widget, conv.cost(), *conv.messages)
    )
    surfaces["reply markdown"] = reply._repr_markdown_()
    surfaces["cost html"] = conv.cost()._repr_html_()
    surfaces["exceptions"] = "\n".join(exception_texts(e) for e in errors)
    surfaces["messages' errors"] = "\n".join(m.error or "" for m in conv.messages)
    surfaces["saved file"] = repr(conv.save(tmp_path / "chat.json").read_bytes())
    surfaces["saved copy"] = repr(twin.save(tmp_path / "twin.json").read_bytes())
    surfaces["html export"] = conv.to_html()
    surfaces["markdown export"] = conv.to_markdown(images="full")
    for name, obj in (("conversation", conv), ("provider", conv.provider), ("reply", reply)):
        surfaces[f"pickle of the {name}"] = pickle_outcome(obj)
    surfaces["pickle of the messages"] = pickle_outcome(conv.messages)
    state = widget.get_state()
    surfaces["widget state"] = json.dumps(state, default=repr)
    surfaces["widget history"] = "".join(
        gzip.decompress(b).decode() for b in (widget.history, widget.history_recent) if b
    )
    surfaces["page messages"] = json.dumps(page.sent, default=repr) + repr(page.buffers)
    return surfaces, [conv, branch, twin, widget, reply, *errors]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_key_is_nowhere_to_be_seen(
    backend: str,
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    conv = conversation(backend, emu, monkeypatch)
    surfaces, objects = run_everything(backend, emu, conv, tmp_path)
    if backend in HTTP_BACKENDS:
        assert any(r.name.startswith(("httpx", "httpcore")) for r in caplog.records)
    surfaces["log records"] = caplog.text + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records
    )
    leaked = sorted(name for name, text in surfaces.items() if KEY in text)
    assert leaked == []
    # the engine's shared HTTP client is not held by any conversation: walk it too
    shared = list(_http._ENGINE_CLIENTS.values())
    paths, reached = leaks_in_graph(*objects, *shared)
    assert paths == [], "the key is reachable at:\n" + "\n".join(paths)
    assert {"Engine", "Secret" if backend != "offline" else "OfflineProvider"} <= reached
    if backend in HTTP_BACKENDS:  # where httpx keeps default headers and connections
        assert {"AsyncClient", "Headers", "AsyncConnectionPool"} <= reached
    conv.ask("still works after all that", show=False)


@pytest.mark.parametrize("backend", ("1min", "openai", "custom"))
def test_pickling_a_conversation_refuses_and_says_what_to_do(
    backend: str, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    conv = conversation(backend, emu, monkeypatch)
    conv.ask("hello", show=False)
    with pytest.raises(TypeError) as info:
        pickle.dumps(conv)
    text = str(info.value)
    assert "save(" in text and "Conversation.load(" in text and "fork()" in text
    assert KEY not in exception_texts(info.value)
    if backend != "custom":  # a provider of ours refuses on its own, for the key's sake
        with pytest.raises(TypeError, match="API key"):
            pickle.dumps(conv.provider)


def test_copies_are_forks_that_share_nothing_mutable(emu: Emulator) -> None:
    conv = Conversation("gpt-4o", provider="1min", api_key=KEY, base_url=emu.base_url)
    conv.ask("first", RED, show=False)
    for twin in (copy.copy(conv), copy.deepcopy(conv)):
        assert twin is not conv and twin.messages == conv.messages
        twin.ask("only in the copy", show=False)
        assert len(twin.messages) == len(conv.messages) + 2
        assert twin.session["conversation_id"] != conv.session["conversation_id"]


@pytest.mark.parametrize("backend", ("1min", "openai"))
def test_a_server_that_echoes_the_key_has_it_blanked_out(
    backend: str, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some gateways quote the key they rejected; the error must not pass it on.

    (The server's own words stay as they came in the variables of the frames that
    parsed them, which is where a verbose traceback would show them.)
    """
    conv = conversation(backend, emu, monkeypatch)
    emu.add_fault("status", status=401, body={"error": {"message": f"Bad key: {KEY}."}})
    with pytest.raises(APIError) as info:
        conv.ask("hello?", show=False)
    assert "Bad key: ***" in str(info.value)
    assert KEY not in exception_texts(info.value, with_variables=False)
    assert KEY not in (conv.messages[-1].error or "")
    emu.add_fault("error_event", after_chunks=1, message=f"upstream said {KEY}")
    with pytest.raises(APIError) as info:
        conv.ask("and now?", show=False)
    assert "upstream said ***" in str(info.value)
    assert KEY not in exception_texts(info.value, with_variables=False)


# -- the Secret type itself -------------------------------------------------------


def test_a_secret_is_masked_everywhere_but_reveal() -> None:
    s = Secret(KEY)
    assert s.reveal() == KEY
    shown = [repr(s), str(s), f"{s}", f"{s!r:>80}", f"{s:>20}", str([s]), str({"k": s})]
    assert all(KEY not in text and "***" in text for text in shown)
    assert leaks_in_graph(s) == ([], {"Secret"})
    assert len(_children(s)) == 3  # the walk looked into its slots: the key is held masked


def test_the_walk_finds_a_key_kept_the_old_way() -> None:
    """The check above can fail: a plain attribute, however deep or mangled, is found."""

    class Provider:
        def __init__(self) -> None:
            self.__key = KEY
            self.client_headers = [(b"authorization", b"Bearer " + KEY.encode())]

    holder = types.SimpleNamespace(_api_key=KEY, provider=Provider())

    def remove() -> object:  # a listener's remover, closing over its conversation
        return holder

    paths, _ = leaks_in_graph({"remove": remove})
    assert sorted(paths) == [
        "root0['remove'].<closure>.__dict__['_api_key']",
        "root0['remove'].<closure>.__dict__['provider'].__dict__['_Provider__key']",
        "root0['remove'].<closure>.__dict__['provider'].__dict__['client_headers'][0][1]",
    ]


def test_a_provider_takes_a_secret_as_its_key(emu: Emulator) -> None:
    for provider in (
        OneMinAIProvider(Secret(KEY), base_url=emu.base_url),
        OpenAIProvider(Secret(KEY), base_url=emu.base_url + "/v1"),
    ):
        assert Conversation("gpt-4o", provider=provider).ask("hi", show=False).text


def test_a_secret_refuses_pickling_but_copies_in_process() -> None:
    s = Secret(KEY)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="environment") as info:
            pickle.dumps(s, protocol)
        assert KEY not in exception_texts(info.value)
    assert copy.copy(s) is s and copy.deepcopy({"k": s})["k"] is s


def test_secrets_compare_by_value_without_exposing_it() -> None:
    a, b, c = Secret(KEY), Secret(KEY), Secret(KEY + "x")
    assert a == b and a != c and hash(a) == hash(b)
    assert a != KEY  # never equal to the plain string: no guessing by comparison
    assert {a, b, c} == {a, c}
    assert Secret.of("") is None and Secret.of(None) is None and Secret.of(KEY) == a
    assert a.redact(f"x {KEY} y {KEY}") == "x *** y ***" and a.occurs_in(f"..{KEY}..")
    with pytest.raises(TypeError, match="empty"):
        Secret("")


@pytest.mark.parametrize("backend", ("1min", "openai"))
def test_a_batch_keeps_the_key_out_of_its_table_cache_progress_and_logs(
    backend: str, emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import visionchat

    url = emu.base_url + ("/v1" if backend == "openai" else "")
    cache = tmp_path / "answers.sqlite"
    seen: list[object] = []
    caplog.set_level(logging.DEBUG)
    table = visionchat.batch([RED, BLUE], "What colour?", schema={"colour": str},
                             provider=backend, api_key=KEY, base_url=url, cache=cache,
                             progress=lambda p: seen.append(repr(p)))  # fmt: skip
    refused = visionchat.batch([RED], "What colour?", provider=backend, api_key=KEY[::-1] + "x",
                               base_url=url, progress=False)  # fmt: skip
    assert table["error"].isna().all() and refused["error"].notna().all()
    surfaces = {
        "table": table.to_csv() + repr(table.attrs) + refused.to_csv(),
        "cache": cache.read_bytes().decode("latin-1"),
        "progress": "".join(map(str, seen)),
        "logs": caplog.text,
    }
    for name, text in surfaces.items():
        assert KEY not in text, f"the key is in the batch's {name}"
    assert not leaks_in_graph(table, refused)[0]
