"""The Conversation over real loopback HTTP: the 1min.ai and OpenAI-compatible
providers against the emulator, faults included."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from test_conversation_fakes import make_image
from visionchat.conversation import Conversation
from visionchat.errors import APIError
from visionchat.testing import Emulator

KEY = "test-key-for-conversations"
RED = make_image((220, 20, 20), (64, 48))
BLUE = make_image((20, 20, 220), (80, 60))


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    """The plugin's emulator (fresh state per test), answering to this module's key."""
    emulator.api_key = KEY
    return emulator


def chats(emu: Emulator) -> list[dict]:  # type: ignore[type-arg]
    return [r.json for r in emu.requests if r.path == "/api/chat-with-ai"]


def uploads(emu: Emulator) -> int:
    return sum(1 for r in emu.requests if r.path == "/api/assets")


# -- 1min.ai (the server keeps the history) -----------------------------------


def onemin(emu: Emulator) -> Conversation:
    return Conversation(model="gpt-4o", provider="1min", api_key=KEY, base_url=emu.base_url)


def test_1min_turns_follow_ups_and_credits(emu: Emulator) -> None:
    conv = onemin(emu)
    first = conv.ask("what is this?", RED, BLUE)
    assert "64" in first.text and "48" in first.text  # the emulator saw the image
    assert first.credits is not None and first.credits > 0
    cid = conv.session["conversation_id"]
    second = conv.ask("and now?", RED)
    assert second.text
    assert uploads(emu) == 2  # RED is not uploaded again
    body = chats(emu)[-1]
    assert body["promptObject"]["conversationId"] == cid
    assert body["promptObject"]["prompt"] == "and now?"  # only the new turn is sent
    assert emu.billed_turns == 2
    assert conv.cost().credits == first.credits + (second.credits or 0)
    assert KEY not in repr(conv)


def test_1min_failed_stream_keeps_partial_and_retry_does_not_upload_again(emu: Emulator) -> None:
    conv = onemin(emu)
    emu.add_fault("cut", path="/api/chat-with-ai", after_chunks=3)
    with pytest.raises(APIError) as info:
        conv.ask("describe", RED)
    answer = conv.messages[-1]
    assert answer.error and answer.retryable
    assert answer.text and answer.text == info.value.partial_text
    assert conv.messages[0].images == [RED]
    sent = uploads(emu)
    reply = conv.retry()
    assert not reply.interrupted and reply.text.startswith(answer.text)
    assert uploads(emu) == sent
    assert len(conv.messages) == 2


def test_1min_cancel_keeps_partial(emu: Emulator) -> None:
    conv = onemin(emu)
    emu.add_fault("slow", path="/api/chat-with-ai", tokens_per_second=20)
    started = threading.Event()
    conv.add_listener(lambda ev: started.set() if ev.kind == "delta" else None)
    fut = conv.submit("describe slowly", RED)
    assert started.wait(30)
    conv.cancel()
    reply = fut.result(30)
    assert reply.interrupted and reply.text
    assert conv.messages[-1].interrupted


def test_1min_save_load_continues_the_server_conversation(emu: Emulator, tmp_path: Path) -> None:
    conv = onemin(emu)
    conv.ask("first", RED)
    cid = conv.session["conversation_id"]
    path = conv.save(tmp_path / "c.json")
    assert KEY not in path.read_text()
    loaded = Conversation.load(path, api_key=KEY, base_url=emu.base_url)
    assert loaded.provider_name == "1min" and loaded.messages == conv.messages
    loaded.ask("second")
    assert chats(emu)[-1]["promptObject"]["conversationId"] == cid


def test_1min_fork_starts_its_own_server_conversation(emu: Emulator) -> None:
    conv = onemin(emu)
    conv.ask("first", RED)
    cid = conv.session["conversation_id"]
    branch = conv.fork()
    branch.ask("in the branch")
    assert chats(emu)[-1]["promptObject"].get("conversationId") != cid
    assert branch.session["conversation_id"] != cid
    conv.ask("in the original")
    assert chats(emu)[-1]["promptObject"]["conversationId"] == cid


# -- OpenAI-compatible (the client sends the history) --------------------------


def openai(emu: Emulator, **kw: object) -> Conversation:
    return Conversation(
        model="gpt-4o", provider="openai", api_key=KEY, base_url=emu.base_url + "/v1", **kw
    )


def completions(emu: Emulator) -> list[dict]:  # type: ignore[type-arg]
    return [r.json for r in emu.requests if r.path == "/v1/chat/completions"]


def image_urls(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [
        part["image_url"]["url"]
        for msg in body["messages"]
        if isinstance(msg["content"], list)
        for part in msg["content"]
        if part.get("type") == "image_url"
    ]


def test_openai_history_goes_along_with_its_images(emu: Emulator) -> None:
    conv = openai(emu)
    first = conv.ask("what is this?", RED)
    assert "64" in first.text
    assert first.usage is not None and first.usage.output_tokens
    second = conv.ask("and this?", BLUE)
    body = completions(emu)[-1]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == first.text
    assert image_urls(body) == [RED.to_data_url(), BLUE.to_data_url()]
    assert "80" in second.text
    report = conv.cost()
    assert report.input_tokens is not None and report.estimated_tokens is not None


def test_openai_interrupted_stream_then_retry(emu: Emulator) -> None:
    conv = openai(emu)
    emu.add_fault("error_event", path="/v1/chat/completions", after_chunks=2, message="boom")
    with pytest.raises(APIError):
        conv.ask("describe", RED)
    failed = conv.messages[-1]
    assert failed.error and conv.messages[0].images == [RED]
    reply = conv.retry()
    assert reply.text and not reply.interrupted and conv.messages[-1].error is None
    assert len(conv.messages) == 2


def test_openai_old_images_are_dropped_to_fit_a_small_context(emu: Emulator) -> None:
    from visionchat.providers.base import ModelInfo

    conv = openai(emu)
    small = ModelInfo(id="tiny-vision", vision=True, context_tokens=1200, max_image_edge=512)
    conv.provider.model_info = lambda model: small  # type: ignore[method-assign]
    conv.model = "tiny-vision"
    imgs = [make_image((i * 60, 90, 0), (512, 512)) for i in range(4)]
    for i, img in enumerate(imgs[:3]):
        conv.ask(f"picture {i}", img)
    reply = conv.ask("the last one", imgs[3])
    sent = image_urls(completions(emu)[-1])
    assert sent[-1] == imgs[3].to_data_url()
    assert imgs[0].to_data_url() not in sent  # the oldest went first
    assert reply.notices and "earlier image(s)" in reply.notices[0]


def test_a_plain_script_against_the_emulator() -> None:
    import os
    import subprocess
    import sys
    import textwrap

    tests = Path(__file__).resolve().parent
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tests)!r})
        from test_conversation_fakes import make_image
        from visionchat.conversation import Conversation
        from visionchat.testing import Emulator
        with Emulator(api_key="sk") as emu:
            conv = Conversation(provider="1min", api_key="sk", base_url=emu.base_url)
            print(bool(conv.ask("what?", make_image()).text))
            print(bool("".join(conv.stream("more?"))))
            print(conv.turns, emu.billed_turns)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(tests.parent / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "2", "2"]


# -- one HTTP client for every conversation -----------------------------------


@pytest.mark.parametrize("backend", ["1min", "openai"])
def test_new_conversations_reuse_the_engines_connection(emu: Emulator, backend: str) -> None:
    """Each Conversation (each widget, each batch) makes its own provider, but
    they share the engine's client: its pool and TLS context.  With a client per
    provider, every new conversation opened a new connection."""
    make = onemin if backend == "1min" else openai
    for prompt in ("one", "two", "three"):
        assert make(emu).ask(prompt, show=False).text
    ports = {r.client_port for r in emu.requests}
    assert len(emu.requests) >= 3 and len(ports) == 1


def test_a_providers_timeout_holds_on_the_shared_client(emu: Emulator) -> None:
    from visionchat.errors import StreamInterruptedError
    from visionchat.providers.openai import OpenAIProvider

    emu.add_fault("stall", path="/v1/chat/completions", after_chunks=2, seconds=3)
    quick = OpenAIProvider(KEY, base_url=emu.base_url + "/v1", timeout=httpx.Timeout(5, read=0.3))
    conv = Conversation(model="gpt-4o", provider=quick)
    with pytest.raises(StreamInterruptedError, match="read timeout"):
        conv.ask("x", show=False)
    assert conv.messages[-1].text  # the partial answer is kept
    # the default provider on the same client still waits out a short stall
    emu.add_fault("stall", path="/v1/chat/completions", after_chunks=2, seconds=0.5)
    assert openai(emu).ask("y", show=False).text
