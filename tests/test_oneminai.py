"""The 1min.ai provider against the emulator, over real loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from PIL import Image

from visionchat import prepare_image
from visionchat.errors import (
    AuthenticationError,
    BadRequestError,
    ModelNotFoundError,
    NotVisionCapableError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)
from visionchat.images import PreparedImage
from visionchat.providers.base import TextDelta, TurnRequest, TurnResult, UploadProgress
from visionchat.providers.oneminai import OneMinAIProvider, _title
from visionchat.testing import Emulator

T = TypeVar("T")
KEY = "test-key"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def image(rgb: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> PreparedImage:
    return prepare_image(Image.new("RGB", size, rgb))


def provider(emu: Emulator, **kw: Any) -> OneMinAIProvider:
    kw.setdefault("retry_backoff", 0.01)
    return OneMinAIProvider(KEY, base_url=emu.base_url, **kw)


async def collect(p: OneMinAIProvider, req: TurnRequest) -> tuple[str, TurnResult, list[Any]]:
    text, result, events = "", None, []
    try:
        async for ev in p.stream(req):
            events.append(ev)
            if isinstance(ev, TextDelta):
                text += ev.text
            elif isinstance(ev, TurnResult):
                result = ev
    finally:
        await p.aclose()
    assert result is not None
    return text, result, events


def chats(emu: Emulator) -> list[Any]:
    return [r for r in emu.requests if r.path in ("/api/chat-with-ai", "/api/features")]


def answer_text(emu: Emulator) -> str:
    (record,) = [r for r in emu.records.values()][-1:]
    return "".join(record["aiRecordDetail"]["resultObject"])


# -- the current API -------------------------------------------------------------


def test_streamed_turn_with_two_images(emulator: Emulator) -> None:
    red, blue = image((220, 20, 20), (64, 48)), image((20, 20, 220), (90, 30))
    req = TurnRequest("What do you see?", "gpt-4o", images=[red, blue])
    text, result, events = run(collect(provider(emulator), req))
    assert "I received 2 images" in text
    assert "64×48, mostly red" in text and "90×30, mostly" in text and "blue" in text
    assert text == answer_text(emulator)
    assert [e for e in events if isinstance(e, UploadProgress)][-1] == UploadProgress(2, 2)
    assert result.credits == emulator.credits_billed and result.record_id
    (chat,) = chats(emulator)
    assert chat.query == {"isStreaming": "true"}
    body = chat.json
    assert body["type"] == "UNIFY_CHAT_WITH_AI" and "imageList" not in body["promptObject"]
    assert len(body["promptObject"]["attachments"]["images"]) == 2
    assert body["promptObject"]["conversationId"] == req.session["conversation_id"]
    assert body["promptObject"]["settings"]["webSearchSettings"]["webSearch"] is False
    assert "api-key" not in {k.lower() for k in chat.headers_without_key}
    assert all(name.endswith(".png") for r in emulator.requests for name in r.files)


def test_turns_share_one_connection(emulator: Emulator) -> None:
    # The stream is read past its "done" event, so its connection is reused.
    local_ports: list[int] = []

    async def note(response: httpx.Response) -> None:
        if response.request.url.path == "/api/chat-with-ai":
            stream = response.extensions["network_stream"]
            local_ports.append(stream.get_extra_info("client_addr")[1])

    async def go() -> list[str]:
        async with httpx.AsyncClient(event_hooks={"response": [note]}) as client:
            p = provider(emulator, http_client=client)
            session: dict[str, Any] = {}
            texts = []
            for q in ("one", "two", "three"):
                evs = [e async for e in p.stream(TurnRequest(q, "gpt-4o", session=session))]
                texts.append("".join(e.text for e in evs if isinstance(e, TextDelta)))
            return texts

    texts = asyncio.run(go())
    assert len(texts) == 3 and all(texts)
    assert len(local_ports) == 3 and len(set(local_ports)) == 1


def test_follow_ups_send_only_the_new_turn(emulator: Emulator) -> None:
    p = provider(emulator)
    session: dict[str, Any] = {}

    async def two_turns() -> str:
        first = TurnRequest("Describe the red one", "gpt-4o", [image((200, 0, 0))], session=session)
        async for _ in p.stream(first):
            pass
        second = TurnRequest("And now?", "gpt-4o", session=session)
        text = "".join([e.text async for e in p.stream(second) if isinstance(e, TextDelta)])
        await p.aclose()
        return text

    text = run(two_turns())
    assert "message 2 in this conversation" in text and "Describe the red one" in text
    assert [r.path for r in emulator.requests].count("/api/conversations") == 1
    follow_up = chats(emulator)[-1].json["promptObject"]
    assert follow_up["prompt"] == "And now?" and follow_up["attachments"]["images"] == []


def test_uploads_are_deduplicated_and_concurrent_callers_share_one(emulator: Emulator) -> None:
    p = provider(emulator)
    img = image((1, 2, 3))

    async def go() -> list[str]:
        keys = await asyncio.gather(*(p.upload(img) for _ in range(5)))
        keys.append(await p.upload(img))
        await p.aclose()
        return keys

    keys = run(go())
    assert len(set(keys)) == 1
    assert [r.path for r in emulator.requests].count("/api/assets") == 1


def test_same_image_twice_in_a_turn_uploads_once(emulator: Emulator) -> None:
    img = image((5, 5, 5))
    req = TurnRequest("two of the same", "gpt-4o", images=[img, img, image((9, 9, 90))])
    text, _, _ = run(collect(provider(emulator), req))
    assert "I received 3 images" in text
    assert [r.path for r in emulator.requests].count("/api/assets") == 2


def test_non_streaming_answer(emulator: Emulator) -> None:
    req = TurnRequest("hi", "gpt-4o", images=[image((0, 200, 0))], options={"stream": False})
    text, result, _ = run(collect(provider(emulator), req))
    assert text == answer_text(emulator) and "green" in text
    assert result.credits and "isStreaming" not in chats(emulator)[0].query


def test_web_search_settings(emulator: Emulator) -> None:
    req = TurnRequest("news?", "gpt-4o", web_search=True, options={"num_of_site": 5})
    run(collect(provider(emulator, web_search_words=500), req))
    ws = chats(emulator)[0].json["promptObject"]["settings"]["webSearchSettings"]
    assert ws == {"webSearch": True, "numOfSite": 5, "maxWord": 500}


def test_long_first_prompt_gives_a_short_title(emulator: Emulator) -> None:
    prompt = "word " * 60
    run(collect(provider(emulator), TurnRequest(prompt, "gpt-4o")))
    (conv,) = [r for r in emulator.requests if r.path == "/api/conversations"]
    assert len(conv.json["title"]) <= 91 and conv.json["title"].endswith("…")
    assert _title("short") == "short"


def test_delete_conversation(emulator: Emulator) -> None:
    p = provider(emulator)
    session: dict[str, Any] = {}

    async def go() -> None:
        async for _ in p.stream(TurnRequest("hi", "gpt-4o", session=session)):
            pass
        cid = session["conversation_id"]
        assert cid in emulator.conversations
        await p.delete_conversation(session)
        assert cid not in emulator.conversations and "conversation_id" not in session
        await p.delete_conversation({"conversation_id": cid})  # already gone: fine
        await p.aclose()

    run(go())


# -- the legacy API -----------------------------------------------------------------


def test_legacy_raw_stream_decodes_split_characters(emulator: Emulator) -> None:
    req = TurnRequest("legacy?", "gpt-4o", images=[image((250, 250, 0), (33, 44))])
    text, _, events = run(collect(provider(emulator, api="legacy"), req))
    assert text == answer_text(emulator) and "33×44" in text and "“legacy?”" in text
    assert "\ufffd" not in text  # no replacement characters from split bytes
    assert len([e for e in events if isinstance(e, TextDelta)]) > 10
    body = chats(emulator)[0].json
    assert body["type"] == "CHAT_WITH_IMAGE" and len(body["promptObject"]["imageList"]) == 1
    assert body["conversationId"] == req.session["conversation_id"]
    assert "webSearch" in body["promptObject"] and "settings" not in body["promptObject"]


def test_legacy_two_step_stream(emulator: Emulator) -> None:
    emulator.legacy_mode = "two_step"
    text, _, _ = run(collect(provider(emulator, api="legacy"), TurnRequest("two", "gpt-4o")))
    assert text == answer_text(emulator)
    assert any(r.path.startswith("/api/features/stream/") for r in emulator.requests)


def test_legacy_unsupported_points_at_the_current_api(emulator: Emulator) -> None:
    emulator.legacy_mode = "unsupported"
    with pytest.raises(BadRequestError, match="api='current'"):
        run(collect(provider(emulator, api="legacy"), TurnRequest("x", "gpt-4o")))


# -- models and validation ----------------------------------------------------------


def test_models_and_vision_check_before_upload(emulator: Emulator) -> None:
    p = provider(emulator)

    async def go() -> None:
        models = {m.id: m for m in await p.list_models()}
        assert models["gpt-4o"].vision and models["gpt-4o"].context_tokens == 128_000
        assert not models["deepseek-chat"].vision
        with pytest.raises(NotVisionCapableError, match="cannot see images"):
            async for _ in p.stream(TurnRequest("x", "deepseek-chat", [image((1, 1, 1))])):
                pass
        await p.aclose()

    run(go())
    assert not any(r.path == "/api/assets" for r in emulator.requests)


def test_unknown_model(emulator: Emulator) -> None:
    with pytest.raises(ModelNotFoundError, match="does not offer this model"):
        run(collect(provider(emulator), TurnRequest("x", "gpt-99-imaginary")))


def test_wrong_key_is_an_authentication_error_without_the_key(emulator: Emulator) -> None:
    p = OneMinAIProvider("sk-WRONG-SECRET-1234567890", base_url=emulator.base_url)
    with pytest.raises(AuthenticationError) as info:
        run(collect(p, TurnRequest("x", "gpt-4o")))
    assert "SECRET" not in str(info.value) and "ONEMIN_API_KEY" in str(info.value)
    assert "SECRET" not in repr(p) and "***" in repr(p)


def test_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEMIN_API_KEY", raising=False)
    monkeypatch.delenv("ONE_MIN_AI_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="ONEMIN_API_KEY"):
        OneMinAIProvider()
    monkeypatch.setenv("ONE_MIN_AI_API_KEY", "from-env")
    assert OneMinAIProvider().name == "1min"


def test_bad_upload_type_is_rejected_by_the_service(emulator: Emulator) -> None:
    bad = PreparedImage(
        data=b"not really a png", mime="image/png", width=1, height=1, sha256="ab" * 32,
        thumbnail=b"", thumbnail_mime="image/png", source="test", original_size=(1, 1),
        original_format=None, resized=False,
    )  # fmt: skip
    with pytest.raises(BadRequestError, match="isn't supported"):
        run(provider(emulator).upload(bad))


# -- faults: retried before the first byte, never after ----------------------------


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("rate_limit", {"retry_after": 0.05}),
        ("rate_limit", {"retry_after": "date"}),
        ("rate_limit", {}),
        ("status", {"status": 500}),
        ("status", {"status": 503}),
        ("html_error", {"status": 502}),
        ("html_error", {"status": 522}),
        ("reset", {}),
    ],
)
def test_faults_before_the_first_byte_are_retried(
    emulator: Emulator, kind: str, params: dict[str, Any]
) -> None:
    emulator.add_fault(kind, **params)
    text, _, _ = run(collect(provider(emulator), TurnRequest("retry me", "gpt-4o")))
    assert text == answer_text(emulator)
    assert len(chats(emulator)) == 2 and emulator.billed_turns == 1


def test_uploads_are_retried_too(emulator: Emulator) -> None:
    emulator.add_fault("status", path="/api/assets", status=502)
    key = run(provider(emulator).upload(image((3, 4, 5))))
    assert key in emulator.uploads


def test_retries_are_bounded(emulator: Emulator) -> None:
    emulator.add_fault("html_error", times=10, status=503)
    with pytest.raises(ServerError) as info:
        run(collect(provider(emulator, max_retries=2), TurnRequest("x", "gpt-4o")))
    assert len(chats(emulator)) == 3 and emulator.billed_turns == 0
    assert "<html" not in str(info.value).lower() and "try again" in str(info.value)


def test_rate_limit_that_persists_says_when_to_retry(emulator: Emulator) -> None:
    emulator.add_fault("rate_limit", times=5, retry_after=0.01)
    with pytest.raises(RateLimitError) as info:
        run(collect(provider(emulator, max_retries=1), TurnRequest("x", "gpt-4o")))
    assert info.value.retry_after == pytest.approx(0.01)


def test_cut_stream_keeps_partial_text_and_is_not_resent(emulator: Emulator) -> None:
    emulator.add_fault("cut", after_chunks=4)
    with pytest.raises(StreamInterruptedError) as info:
        run(collect(provider(emulator), TurnRequest("cut me", "gpt-4o")))
    partial = info.value.partial_text
    assert (
        partial and answer_text(emulator).startswith(partial) and partial != answer_text(emulator)
    )
    assert len(chats(emulator)) == 1 and emulator.billed_turns == 1
    assert "bill twice" in str(info.value)


def test_legacy_cut_stream_keeps_partial_text(emulator: Emulator) -> None:
    emulator.add_fault("cut", after_chunks=3)
    with pytest.raises(StreamInterruptedError) as info:
        run(collect(provider(emulator, api="legacy"), TurnRequest("cut", "gpt-4o")))
    assert answer_text(emulator).startswith(info.value.partial_text)
    assert emulator.billed_turns == 1


def test_error_event_keeps_partial_text(emulator: Emulator) -> None:
    emulator.add_fault("error_event", after_chunks=3, message="model overloaded")
    with pytest.raises(StreamInterruptedError, match="model overloaded") as info:
        run(collect(provider(emulator), TurnRequest("x", "gpt-4o")))
    assert len(info.value.partial_text.split()) == 3 and emulator.billed_turns == 1


def test_stall_longer_than_the_read_timeout(emulator: Emulator) -> None:
    emulator.add_fault("stall", after_chunks=2, seconds=5)
    with pytest.raises(StreamInterruptedError, match="read timeout") as info:
        run(collect(provider(emulator, timeout=0.5), TurnRequest("x", "gpt-4o")))
    assert info.value.partial_text and emulator.billed_turns == 1


def test_slow_stream_and_duplicated_final_chunk(emulator: Emulator) -> None:
    emulator.add_fault("slow", tokens_per_second=400)
    emulator.add_fault("duplicate_final")
    text, _, _ = run(collect(provider(emulator), TurnRequest("slowly", "gpt-4o")))
    assert text == answer_text(emulator)  # the repeated whole text was dropped


def test_streaming_is_incremental(emulator: Emulator) -> None:
    """Deltas arrive while the server is still sending: the stall holds the rest back."""
    emulator.add_fault("stall", after_chunks=3, seconds=30)
    p = provider(emulator)

    async def first_three() -> list[str]:
        got: list[str] = []
        async for ev in p.stream(TurnRequest("incremental?", "gpt-4o")):
            if isinstance(ev, TextDelta):
                got.append(ev.text)
                if len(got) == 3:
                    break
        await p.aclose()
        return got

    got = run(asyncio.wait_for(first_three(), 15))  # without incremental reads: 30 s, fails
    assert len(got) == 3 and answer_text(emulator).startswith("".join(got))


def test_provider_with_a_user_supplied_client(emulator: Emulator) -> None:
    import httpx

    async def go() -> str:
        async with httpx.AsyncClient() as client:
            p = OneMinAIProvider(KEY, base_url=emulator.base_url, http_client=client)
            text = "".join(
                [
                    e.text
                    async for e in p.stream(TurnRequest("x", "gpt-4o"))
                    if isinstance(e, TextDelta)
                ]
            )
            await p.aclose()
            assert not client.is_closed  # not ours to close
            return text

    assert run(go()) == answer_text(emulator)


def test_html_body_is_summarised_not_dumped() -> None:
    from visionchat.providers._http import Service, error_from_response

    page = "<!DOCTYPE html><html><head><title>502 Bad gateway</title></head><body>x</body></html>"
    err = error_from_response(502, page, {}, Service("1min.ai", "hint"))
    assert isinstance(err, ServerError) and "<" not in str(err) and "502 Bad gateway" in str(err)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            401,
            '{"success": false, "error": {"code": "X", "message": "bad key"}}',
            AuthenticationError,
        ),
        (
            400,
            '{"errorCode": "UNSUPPORTED_MODEL", "message": "Model X is not supported"}',
            ModelNotFoundError,
        ),
        (
            400,
            '{"errorCode": "EXTERNAL_API_RESPONSE_WITH_ERROR", "message": "m", "details": "d"}',
            BadRequestError,
        ),
        (402, '{"message": "Not enough credits"}', __import__("visionchat").OutOfCreditsError),
        (
            403,
            '{"message": "insufficient credit balance"}',
            __import__("visionchat").OutOfCreditsError,
        ),
        (429, "", RateLimitError),
        (500, "", ServerError),
        (503, "oops plain text", ServerError),
        (418, '{"detail": "teapot"}', BadRequestError),
    ],
)
def test_error_bodies_are_read_tolerantly(status: int, body: str, kind: type) -> None:
    from visionchat.providers._http import Service, error_from_response

    err = error_from_response(status, body, {}, Service("1min.ai", "hint"))
    assert isinstance(err, kind) and err.status == status
    assert str(err)


def test_retry_after_parsing() -> None:
    import time
    from email.utils import formatdate

    from visionchat.providers._http import parse_retry_after

    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 0 <= (parse_retry_after(formatdate(time.time() + 5, usegmt=True)) or 0) <= 6


def test_a_fork_restates_earlier_turns_in_its_new_server_conversation(emulator: Emulator) -> None:
    from visionchat.providers.base import HistoryTurn

    earlier = image((200, 10, 10), (50, 50))
    history = [
        HistoryTurn("user", "What colour is this?", (earlier,)),
        HistoryTurn("assistant", "It is red."),
    ]
    session: dict[str, Any] = {}
    req = TurnRequest("And its size?", "gpt-4o", history=history, session=session)
    text, _, _ = run(collect(provider(emulator), req))
    sent = chats(emulator)[0].json["promptObject"]
    assert (
        "User: What colour is this?" in sent["prompt"] and "Assistant: It is red." in sent["prompt"]
    )
    assert sent["prompt"].endswith("Now the user asks: And its size?")
    assert len(sent["attachments"]["images"]) == 1 and "50×50" in text
    # once the server holds the conversation, follow-ups send only the new prompt
    req2 = TurnRequest("Thanks", "gpt-4o", history=history, session=session)
    run(collect(provider(emulator), req2))
    assert chats(emulator)[1].json["promptObject"]["prompt"] == "Thanks"
