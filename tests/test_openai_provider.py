"""The OpenAI-compatible provider against the emulator's /v1 endpoint, over loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from PIL import Image

from visionchat import prepare_image
from visionchat.errors import (
    AuthenticationError,
    ModelNotFoundError,
    StreamInterruptedError,
)
from visionchat.providers.base import HistoryTurn, TextDelta, TurnRequest, TurnResult
from visionchat.providers.openai import OpenAIProvider
from visionchat.testing import Emulator

KEY = "test-key"


def provider(emu: Emulator, **kw: Any) -> OpenAIProvider:
    kw.setdefault("retry_backoff", 0.01)
    return OpenAIProvider(kw.pop("key", KEY), base_url=emu.base_url + "/v1", **kw)


def ask(p: OpenAIProvider, req: TurnRequest) -> tuple[str, TurnResult]:
    async def go() -> tuple[str, TurnResult]:
        text, result = "", None
        try:
            async for ev in p.stream(req):
                if isinstance(ev, TextDelta):
                    text += ev.text
                elif isinstance(ev, TurnResult):
                    result = ev
        finally:
            await p.aclose()
        assert result is not None
        return text, result

    return asyncio.run(go())


def completions(emu: Emulator) -> list[Any]:
    return [r for r in emu.requests if r.path == "/v1/chat/completions"]


def test_streams_with_usage_and_the_images_arrive(emulator: Emulator) -> None:
    img = prepare_image(Image.new("RGB", (70, 35), (220, 20, 20)))
    text, result = ask(provider(emulator), TurnRequest("What is it?", "gpt-4o", [img]))
    assert "I received 1 image" in text and "70×35, mostly red" in text
    assert result.usage and result.usage.input_tokens and result.usage.output_tokens
    (req,) = completions(emulator)
    body = req.json
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    part = body["messages"][-1]["content"][1]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png")
    assert part["image_url"]["detail"] == "auto"
    assert req.headers_without_key.get("authorization") is None  # the key is not recorded


def test_history_is_sent(emulator: Emulator) -> None:
    history = [HistoryTurn("user", "first question"), HistoryTurn("assistant", "first answer")]
    text, _ = ask(provider(emulator), TurnRequest("second?", "gpt-4o", history=history))
    assert "message 2 in this conversation" in text and "first question" in text
    roles = [m["role"] for m in completions(emulator)[0].json["messages"]]
    assert roles == ["user", "assistant", "user"]


@pytest.mark.parametrize(
    ("kind", "params"),
    [("rate_limit", {"retry_after": 0.05}), ("status", {"status": 500}), ("reset", {})],
)
def test_faults_before_the_first_byte_are_retried(
    emulator: Emulator, kind: str, params: dict[str, Any]
) -> None:
    emulator.add_fault(kind, **params)
    text, _ = ask(provider(emulator), TurnRequest("x", "gpt-4o"))
    assert "You asked" in text and len(completions(emulator)) == 2
    assert emulator.billed_turns == 1


def test_cut_stream_keeps_partial_text_and_is_not_resent(emulator: Emulator) -> None:
    emulator.add_fault("cut", after_chunks=3)
    with pytest.raises(StreamInterruptedError) as info:
        ask(provider(emulator), TurnRequest("cut", "gpt-4o"))
    assert info.value.partial_text and emulator.billed_turns == 1
    assert len(completions(emulator)) == 1


def test_error_in_stream(emulator: Emulator) -> None:
    emulator.add_fault("error_event", after_chunks=2, message="overloaded")
    with pytest.raises(StreamInterruptedError, match="overloaded") as info:
        ask(provider(emulator), TurnRequest("x", "gpt-4o"))
    assert info.value.partial_text


def test_wrong_key_and_unknown_model(emulator: Emulator) -> None:
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY") as info:
        ask(provider(emulator, key="sk-SECRET-WRONG"), TurnRequest("x", "gpt-4o"))
    assert "SECRET" not in str(info.value)
    with pytest.raises(ModelNotFoundError):
        ask(provider(emulator), TurnRequest("x", "missing-model"))


def test_models_listing(emulator: Emulator) -> None:
    async def go() -> list[str]:
        p = provider(emulator)
        try:
            return [m.id for m in await p.list_models()]
        finally:
            await p.aclose()

    assert "gpt-4o" in asyncio.run(go())


def test_repr_hides_the_key() -> None:
    p = OpenAIProvider("sk-VERYSECRET", base_url="http://127.0.0.1:1/v1")
    assert "VERYSECRET" not in repr(p) and "***" in repr(p)
