"""The API key stays in the kernel, and in the kernel out of sight: the Secret type.

The key is looked for where a person or a tool could come across it: reprs, and
the objects reachable through ``vars()`` and ``__slots__`` (what a debugger's
variable view or JupyterLab's variable inspector walks), and pickles.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
import traceback
import types
from collections import deque

import pytest

from visionchat._secret import Secret

KEY = "sk-vc-SECRET-0f1e2d3c4b5a69788796a5b4c3d2e1f0"


# -- looking for the key ---------------------------------------------------------

# Not walked: classes and modules (shared by everyone), and tracebacks.
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


def exception_texts(exc: BaseException) -> str:
    """The error as shown: message, repr and traceback."""
    return f"{exc}\n{exc!r}\n" + "".join(traceback.format_exception(exc))


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
