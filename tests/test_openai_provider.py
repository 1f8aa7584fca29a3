"""The OpenAI-compatible provider against the emulator's /v1 endpoint, over loopback."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from PIL import Image

from visionchat.errors import (
    AuthenticationError,
    BadRequestError,
    ModelNotFoundError,
    NotVisionCapableError,
    OutOfCreditsError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)
from visionchat.images import prepare_image
from visionchat.providers.base import (
    HistoryTurn,
    Provider,
    StreamEvent,
    TextDelta,
    TurnRequest,
    TurnResult,
    UploadProgress,
)
from visionchat.providers.openai import OpenAIProvider, listed_models
from visionchat.testing import Emulator

KEY = "test-key"
RED = prepare_image(Image.new("RGB", (70, 35), (220, 20, 20)))
BLUE = prepare_image(Image.new("RGB", (20, 40), (20, 30, 200)))


def provider(emu: Emulator, **kw: Any) -> OpenAIProvider:
    kw.setdefault("retry_backoff", 0.01)
    return OpenAIProvider(kw.pop("key", KEY), base_url=emu.base_url + "/v1", **kw)


def events(p: OpenAIProvider, req: TurnRequest) -> list[StreamEvent]:
    async def go() -> list[StreamEvent]:
        try:
            return [ev async for ev in p.stream(req)]
        finally:
            await p.aclose()

    return asyncio.run(go())


def ask(p: OpenAIProvider, req: TurnRequest) -> tuple[str, TurnResult]:
    evs = events(p, req)
    assert isinstance(evs[-1], TurnResult)
    return "".join(e.text for e in evs if isinstance(e, TextDelta)), evs[-1]


def completions(emu: Emulator) -> list[Any]:
    return [r for r in emu.requests if r.path == "/v1/chat/completions"]


def test_it_is_a_provider() -> None:
    p = OpenAIProvider("k", base_url="http://127.0.0.1:9/v1")
    assert isinstance(p, Provider) and p.name == "openai" and p.keeps_history is False
    assert asyncio.run(p.upload(RED)) == RED.to_data_url()  # images travel inline


def test_streams_with_usage_and_the_images_arrive(emulator: Emulator) -> None:
    evs = events(provider(emulator), TurnRequest("What is it?", "gpt-4o", [RED, BLUE]))
    assert evs[0] == UploadProgress(2, 2)
    text = "".join(e.text for e in evs if isinstance(e, TextDelta))
    assert "I received 2 images" in text and "70×35, mostly red" in text
    assert "20×40, mostly blue" in text
    result = evs[-1]
    assert isinstance(result, TurnResult) and result.model == "gpt-4o"
    assert result.usage and result.usage.input_tokens and result.usage.output_tokens
    assert sum(isinstance(e, TextDelta) for e in evs) > 10  # word by word, as streamed
    (req,) = completions(emulator)
    body = req.json
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    content = body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What is it?"}
    assert content[1] == {
        "type": "image_url",
        "image_url": {"url": RED.to_data_url(), "detail": "auto"},
    }
    assert req.headers_without_key.get("authorization") is None  # the key is not recorded


def test_detail_and_options_are_sent(emulator: Emulator) -> None:
    req = TurnRequest("x", "gpt-4o", [RED], options={"temperature": 0.2, "max_tokens": 50, "x": 1})
    ask(provider(emulator, detail="low"), req)
    body = completions(emulator)[0].json
    assert body["messages"][-1]["content"][1]["image_url"]["detail"] == "low"
    assert body["temperature"] == 0.2 and body["max_tokens"] == 50 and "x" not in body
    with pytest.raises(ValueError, match="detail"):
        OpenAIProvider("k", detail="ultra")


def test_history_is_sent_with_the_users_images(emulator: Emulator) -> None:
    history = [
        HistoryTurn("user", "first question", (RED,)),
        HistoryTurn("assistant", "first answer", (BLUE,)),  # never sent as an image
    ]
    text, _ = ask(provider(emulator), TurnRequest("second?", "gpt-4o", history=history))
    assert "message 2 in this conversation" in text and "first question" in text
    messages = completions(emulator)[0].json["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"][1]["image_url"]["url"] == RED.to_data_url()
    assert messages[1]["content"] == "first answer" and messages[2]["content"] == "second?"


def test_key_and_base_url_from_the_environment(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", emulator.base_url + "/v1/")
    p = OpenAIProvider()
    assert p.base_url == emulator.base_url + "/v1"
    assert "You asked" in ask(p, TurnRequest("hello", "gpt-4o"))[0]


def test_no_key_sends_no_authorization(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    p = OpenAIProvider(base_url=emulator.base_url + "/v1")  # as for Ollama
    assert repr(p).endswith("api_key=None)")
    with pytest.raises(AuthenticationError, match="local servers such as Ollama need none"):
        ask(p, TurnRequest("x", "gpt-4o"))  # this server wants one


def test_streaming_is_incremental(emulator: Emulator) -> None:
    emulator.add_fault("stall", after_chunks=3, seconds=0.4)
    p = provider(emulator)
    seen: list[float] = []

    async def go() -> None:
        try:
            async for ev in p.stream(TurnRequest("x", "gpt-4o")):
                if isinstance(ev, TextDelta | TurnResult):
                    seen.append(time.monotonic())
        finally:
            await p.aclose()

    asyncio.run(go())
    # The first words arrived before the server paused, the rest after: never all at once.
    assert seen[-1] - seen[0] >= 0.35


def test_turns_share_one_connection(emulator: Emulator) -> None:
    # A stream closed before its body ended takes its connection with it, and
    # the next turn pays for a new handshake: the end marker is read past.
    local_ports: list[int] = []

    async def note(response: httpx.Response) -> None:
        local_ports.append(response.extensions["network_stream"].get_extra_info("client_addr")[1])

    async def go() -> list[str]:
        async with httpx.AsyncClient(event_hooks={"response": [note]}) as client:
            p = provider(emulator, http_client=client)
            texts = []
            for _ in range(3):
                evs = [e async for e in p.stream(TurnRequest("x", "gpt-4o"))]
                texts.append("".join(e.text for e in evs if isinstance(e, TextDelta)))
            return texts

    texts = asyncio.run(go())
    assert len(texts) == 3 and all(texts)
    assert len(local_ports) == 3 and len(set(local_ports)) == 1


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("rate_limit", {"retry_after": 0.05}),
        ("rate_limit", {}),
        ("status", {"status": 500}),
        ("status", {"status": 503}),
        ("html_error", {"status": 502}),
        ("reset", {}),
    ],
)
def test_faults_before_the_first_byte_are_retried(
    emulator: Emulator, kind: str, params: dict[str, Any]
) -> None:
    emulator.add_fault(kind, **params)
    text, _ = ask(provider(emulator), TurnRequest("x", "gpt-4o"))
    assert "You asked" in text and len(completions(emulator)) == 2
    assert emulator.billed_turns == 1


def test_retry_after_is_honoured(emulator: Emulator) -> None:
    emulator.add_fault("rate_limit", retry_after=0.3)
    start = time.monotonic()
    ask(provider(emulator, retry_backoff=0.001), TurnRequest("x", "gpt-4o"))
    first, second = completions(emulator)
    assert second.time - first.time >= 0.25  # the server's hint, not the tiny backoff
    assert time.monotonic() - start >= 0.25


def test_retries_are_bounded(emulator: Emulator) -> None:
    emulator.add_fault("rate_limit", times=5, retry_after=0.01)
    with pytest.raises(RateLimitError, match="rate-limiting") as info:
        ask(provider(emulator, max_retries=2), TurnRequest("x", "gpt-4o"))
    assert info.value.retry_after == pytest.approx(0.01)
    assert len(completions(emulator)) == 3 and emulator.billed_turns == 0
    emulator.reset()
    emulator.add_fault("status", times=2, status=500)
    with pytest.raises(ServerError, match="try again"):
        ask(provider(emulator, max_retries=1), TurnRequest("x", "gpt-4o"))


def test_retry_waits_keep_doubling(emulator: Emulator) -> None:
    """Each wait doubles: the third request waits 0.4-0.6 s, not the first wait again."""
    emulator.add_fault("status", times=2, status=503)
    ask(provider(emulator, retry_backoff=0.2), TurnRequest("x", "gpt-4o"))
    first, second, third = completions(emulator)
    assert second.time - first.time >= 0.2
    assert third.time - second.time >= 0.4


def test_out_of_quota_is_not_retried(emulator: Emulator) -> None:
    quota = {
        "error": {
            "message": "You exceeded your current quota, please check your plan and billing.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
    }
    emulator.add_fault("status", status=429, body=quota)
    with pytest.raises(OutOfCreditsError, match="out of credits") as info:
        ask(provider(emulator), TurnRequest("x", "gpt-4o"))
    assert info.value.status == 429 and len(completions(emulator)) == 1


def test_cut_stream_keeps_partial_text_and_is_not_resent(emulator: Emulator) -> None:
    emulator.add_fault("cut", after_chunks=3)
    with pytest.raises(StreamInterruptedError, match="not re-sent automatically") as info:
        ask(provider(emulator), TurnRequest("cut", "gpt-4o"))
    partial = info.value.partial_text
    assert partial == "[gpt-4o via the "  # the three words sent before the cut
    assert emulator.billed_turns == 1 and len(completions(emulator)) == 1


def test_a_stall_longer_than_the_read_timeout_interrupts(emulator: Emulator) -> None:
    emulator.add_fault("stall", after_chunks=2, seconds=3)
    p = provider(emulator, timeout=httpx.Timeout(5.0, read=0.3))
    with pytest.raises(StreamInterruptedError, match="read timeout") as info:
        ask(p, TurnRequest("x", "gpt-4o"))
    assert info.value.partial_text and emulator.billed_turns == 1
    assert len(completions(emulator)) == 1


def test_a_given_client_keeps_its_own_timeout(emulator: Emulator) -> None:
    # Requests carry the provider's timeout, but only when one was asked for:
    # a client passed in without timeout= keeps the one it was made with.
    emulator.add_fault("stall", after_chunks=2, seconds=3)

    async def go() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.3)) as client:
            p = provider(emulator, http_client=client)
            async for _ in p.stream(TurnRequest("x", "gpt-4o")):
                pass

    with pytest.raises(StreamInterruptedError, match="read timeout"):
        asyncio.run(go())


def test_error_in_stream(emulator: Emulator) -> None:
    emulator.add_fault("error_event", after_chunks=2, message="overloaded")
    with pytest.raises(StreamInterruptedError, match="overloaded") as info:
        ask(provider(emulator), TurnRequest("x", "gpt-4o"))
    assert info.value.partial_text


def test_cancelling_closes_the_stream(emulator: Emulator) -> None:
    emulator.chunk_delay = 0.02
    p = provider(emulator)

    async def go() -> tuple[str, str]:
        try:
            gen = p.stream(TurnRequest("x", "gpt-4o"))
            first = ""
            async for ev in gen:
                if isinstance(ev, TextDelta):
                    first = ev.text
                    break
            await gen.aclose()  # as a cancelled turn does
            emulator.chunk_delay = 0.0
            again, _ = "", None
            async for ev in p.stream(TurnRequest("y", "gpt-4o")):
                if isinstance(ev, TextDelta):
                    again += ev.text
            return first, again
        finally:
            await p.aclose()

    first, again = asyncio.run(go())
    assert first and "You asked: “y”" in again  # the client is still usable


def test_wrong_key_and_unknown_model(emulator: Emulator) -> None:
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY") as info:
        ask(provider(emulator, key="sk-SECRET-WRONG"), TurnRequest("x", "gpt-4o"))
    assert "SECRET" not in str(info.value) and len(completions(emulator)) == 1
    with pytest.raises(ModelNotFoundError, match="does not offer this model"):
        ask(provider(emulator), TurnRequest("x", "missing-model"))


def test_a_known_text_only_model_refuses_images_before_sending(emulator: Emulator) -> None:
    with pytest.raises(NotVisionCapableError, match="cannot see images"):
        ask(provider(emulator), TurnRequest("x", "gpt-3.5-turbo", [RED]))
    assert completions(emulator) == []


def test_models_listing_and_model_info(emulator: Emulator) -> None:
    async def go() -> list[str]:
        p = provider(emulator)
        try:
            return [m.id for m in await p.list_models() if m.vision]
        finally:
            await p.aclose()

    assert "gpt-4o" in asyncio.run(go())
    p = OpenAIProvider("k", base_url="http://127.0.0.1:9/v1")
    local = p.model_info("llava:13b")
    assert local is not None and local.vision and local.id == "llava:13b"
    known = p.model_info("gpt-4o")
    assert known is not None and known.context_tokens == 128_000


def test_listed_models_tell_chat_from_other_models() -> None:
    rows = [
        {"id": "gpt-4o", "owned_by": "system"},
        {"id": "text-embedding-3-small", "owned_by": "system"},
        {"id": "whisper-1"},
        {"id": "dall-e-3"},
        {"id": "gpt-3.5-turbo"},
        {"id": "llava:13b", "owned_by": "library"},
        {"no": "id"},
    ]
    got = {m.id: (m.vision, m.vendor) for m in listed_models(rows)}
    assert got == {
        "gpt-4o": (True, "openai"),
        "text-embedding-3-small": (False, ""),
        "whisper-1": (False, ""),
        "dall-e-3": (False, ""),
        "gpt-3.5-turbo": (False, "openai"),
        "llava:13b": (True, ""),
    }


def test_repr_hides_the_key() -> None:
    p = OpenAIProvider("sk-VERYSECRET", base_url="http://127.0.0.1:1/v1")
    assert "VERYSECRET" not in repr(p) and "***" in repr(p)


# -- servers that differ from OpenAI: a small real server on loopback -------------


@contextmanager
def server(reply: Any) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP server whose POST handler is ``reply(body) -> (status, ctype, bytes)``,
    optionally with a fourth item: more headers."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            status, ctype, payload, *more = reply(body)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for name, value in (more[0] if more else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def sse(*chunks: dict[str, Any], done: bool = True) -> bytes:
    out = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks)
    return out + (b"data: [DONE]\n\n" if done else b"")


def delta(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


def local(url: str) -> OpenAIProvider:
    return OpenAIProvider(base_url=url, retry_backoff=0.01)


def test_a_compressed_stream_is_decoded() -> None:
    # Plain streams are read without httpx's decoding layer; a gzipped one
    # must still go through it.
    def reply(body: dict[str, Any]) -> tuple[int, str, bytes, dict[str, str]]:
        payload = gzip.compress(sse(delta("Zipped "), delta("answer"), delta("", "stop")))
        return 200, "text/event-stream", payload, {"Content-Encoding": "gzip"}

    with server(reply) as (url, _):
        text, _ = ask(local(url), TurnRequest("x", "llava"))
    assert text == "Zipped answer"


def test_a_stream_without_its_end_marker_is_interrupted() -> None:
    def reply(body: dict[str, Any]) -> tuple[int, str, bytes]:
        return 200, "text/event-stream", sse(delta("Half an "), delta("answer"), done=False)

    with (
        server(reply) as (url, _),
        pytest.raises(StreamInterruptedError, match="end marker") as info,
    ):
        ask(local(url), TurnRequest("x", "llava"))
    assert info.value.partial_text == "Half an answer"


def test_a_finish_reason_ends_a_stream_without_done() -> None:
    def reply(body: dict[str, Any]) -> tuple[int, str, bytes]:
        parts = [{"type": "text", "text": "in parts"}]
        chunks = [delta("Whole, "), {"choices": [{"delta": {"content": parts}}]}, delta("", "stop")]
        return 200, "text/event-stream; charset=utf-8", sse(*chunks, done=False)

    with server(reply) as (url, _):
        text, result = ask(local(url), TurnRequest("x", "llava"))
    assert text == "Whole, in parts" and result.usage is None and result.model == "llava"


def test_a_server_that_answers_with_one_json_body() -> None:
    def reply(body: dict[str, Any]) -> tuple[int, str, bytes]:
        answer = {
            "model": "llava:13b",
            "choices": [{"message": {"role": "assistant", "content": "All at once."}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3},
        }
        return 200, "application/json", json.dumps(answer).encode()

    with server(reply) as (url, _):
        text, result = ask(local(url), TurnRequest("x", "llava:13b"))
    assert text == "All at once." and result.model == "llava:13b"
    assert result.usage is not None and (result.usage.input_tokens, result.usage.output_tokens) == (
        12,
        3,
    )


def test_stream_options_are_dropped_for_a_server_that_rejects_them() -> None:
    def reply(body: dict[str, Any]) -> tuple[int, str, bytes]:
        if "stream_options" in body:
            err = {"error": {"message": "Unrecognized request argument supplied: stream_options"}}
            return 400, "application/json", json.dumps(err).encode()
        return 200, "text/event-stream", sse(delta("fine", "stop"))

    with server(reply) as (url, seen):
        text, _ = ask(local(url), TurnRequest("x", "m"))
    assert text == "fine" and ["stream_options" in b for b in seen] == [True, False]


def test_a_page_instead_of_a_stream_is_explained() -> None:
    def reply(body: dict[str, Any]) -> tuple[int, str, bytes]:
        return 200, "text/html", b"<html><body>Sign in to the Wi-Fi</body></html>"

    with server(reply) as (url, _), pytest.raises(BadRequestError, match="not a chat stream"):
        ask(local(url), TurnRequest("x", "m"))


def test_a_server_that_keeps_the_body_open_after_done_does_not_hold_the_turn() -> None:
    release, finished = threading.Event(), threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            data = sse(delta("All said."))
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            release.wait(30)  # the body stays open until the test has its answer
            self.wfile.write(b"0\r\n\r\n")
            finished.set()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        text, result = ask(local(url), TurnRequest("x", "llava"))
        assert text == "All said." and result.model == "llava"
        assert not finished.is_set()  # the turn ended while the server still held the body
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
