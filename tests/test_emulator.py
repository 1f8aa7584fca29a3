"""The emulator on its own, with raw httpx: it must behave as the service does."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import threading
import time

import httpx
import pytest
from httpx_sse import connect_sse
from PIL import Image

from visionchat.testing import Emulator

H = {"API-KEY": "test-key"}


def png(rgb: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format="PNG")
    return buf.getvalue()


def upload(emu: Emulator, data: bytes, name: str = "img.png") -> httpx.Response:
    return httpx.post(f"{emu.base_url}/api/assets", headers=H, files={"asset": (name, data)})


def current(prompt: str, images: list[str], **extra: object) -> dict[str, object]:
    po = {"prompt": prompt, "attachments": {"images": images}, **extra}
    return {"type": "UNIFY_CHAT_WITH_AI", "model": "gpt-4o", "promptObject": po}


def test_upload_envelope_and_validation(emulator: Emulator) -> None:
    r = upload(emulator, png((1, 2, 3)))
    assert r.status_code == 200
    body = r.json()
    assert body["fileContent"]["path"] == body["asset"]["key"]
    assert emulator.uploads[body["asset"]["key"]] == png((1, 2, 3))
    assert upload(emulator, png((1, 2, 3)), "noextension").json()["errorCode"] == (
        "UNSUPPORTED_FILE_TYPE"
    )
    assert upload(emulator, b"plain text", "notes.png").status_code == 400
    assert upload(emulator, png((1, 2, 3)), "lies.jpg").status_code == 400  # PNG named .jpg
    r = httpx.post(f"{emulator.base_url}/api/assets", files={"asset": ("a.png", png((0, 0, 0)))})
    assert r.status_code == 401 and r.json()["success"] is False


def test_current_sse_stream_answers_from_the_images(emulator: Emulator) -> None:
    red = upload(emulator, png((230, 10, 10), (64, 32))).json()["asset"]["key"]
    blue = upload(emulator, png((10, 10, 230), (20, 20))).json()["asset"]["key"]
    events = []
    with (
        httpx.Client() as client,
        connect_sse(
            client,
            "POST",
            f"{emulator.base_url}/api/chat-with-ai?isStreaming=true",
            headers=H,
            json=current("compare", [red, blue]),
        ) as source,
    ):
        events = [(e.event, e.data) for e in source.iter_sse()]
    kinds = [k for k, _ in events]
    assert kinds[-2:] == ["result", "done"] and set(kinds[:-2]) == {"content"}
    text = "".join(json.loads(d)["content"] for k, d in events if k == "content")
    assert "64×32, mostly red" in text and "20×20, mostly" in text and "blue" in text
    record = json.loads(events[-2][1])["aiRecord"]
    assert record["aiRecordDetail"]["resultObject"] == [text]
    assert record["metadata"]["credit"] > 0 and emulator.billed_turns == 1


def test_image_list_is_silently_ignored_on_the_current_endpoint(emulator: Emulator) -> None:
    key = upload(emulator, png((0, 200, 0))).json()["asset"]["key"]
    body = current("see it?", [], imageList=[key])
    r = httpx.post(f"{emulator.base_url}/api/chat-with-ai", headers=H, json=body)
    assert r.status_code == 200
    assert "no image" in r.json()["aiRecord"]["aiRecordDetail"]["resultObject"][0]


def test_validation_like_the_service(emulator: Emulator) -> None:
    url = f"{emulator.base_url}/api/chat-with-ai"
    assert httpx.post(url, json=current("x", [])).status_code == 401
    bad_model = {**current("x", []), "model": "nope"}
    r = httpx.post(url, headers=H, json=bad_model)
    assert r.status_code == 400 and r.json()["errorCode"] == "UNSUPPORTED_MODEL"
    r = httpx.post(url, headers=H, json=current("x", ["images/never-uploaded.png"]))
    assert r.json()["errorCode"] == "EXTERNAL_API_RESPONSE_WITH_ERROR"


def test_conversations_keep_history(emulator: Emulator) -> None:
    r = httpx.post(
        f"{emulator.base_url}/api/conversations",
        headers=H,
        json={"title": "t", "type": "UNIFY_CHAT_WITH_AI", "model": "gpt-4o"},
    )
    cid = r.json()["conversation"]["uuid"]
    url = f"{emulator.base_url}/api/chat-with-ai"
    httpx.post(url, headers=H, json=current("first", [], conversationId=cid))
    second = httpx.post(url, headers=H, json=current("second", [], conversationId=cid)).json()
    assert (
        "message 2 in this conversation" in second["aiRecord"]["aiRecordDetail"]["resultObject"][0]
    )
    rid = second["aiRecord"]["uuid"]
    got = httpx.get(f"{emulator.base_url}/api/results/{rid}", headers=H).json()
    assert got["aiRecord"]["uuid"] == rid
    assert httpx.get(f"{emulator.base_url}/api/results/none", headers=H).json() == {
        "aiRecord": None
    }
    assert httpx.delete(f"{emulator.base_url}/api/conversations/{cid}", headers=H).is_success
    assert (
        httpx.delete(f"{emulator.base_url}/api/conversations/{cid}", headers=H).status_code == 404
    )


def test_models_listing_marks_text_only_models(emulator: Emulator) -> None:
    rows = httpx.get(
        f"{emulator.base_url}/models", params={"feature": "UNIFY_CHAT_WITH_AI"}, headers=H
    ).json()["models"]
    by_id = {r["modelId"]: r for r in rows}
    assert "image" in by_id["gpt-4o"]["modality"]["INPUT"]
    assert "image" not in by_id["deepseek-chat"]["modality"]["INPUT"]


def legacy(emu: Emulator, prompt: str = "legacy") -> httpx.Response:
    body = {
        "type": "CHAT_WITH_IMAGE",
        "model": "gpt-4o",
        "conversationId": None,
        "promptObject": {"prompt": prompt, "imageList": []},
    }
    return httpx.post(f"{emu.base_url}/api/features?isStreaming=true", headers=H, json=body)


def test_legacy_raw_stream_splits_multibyte_characters(emulator: Emulator) -> None:
    body = {
        "type": "CHAT_WITH_IMAGE",
        "model": "gpt-4o",
        "promptObject": {"prompt": "é?", "imageList": []},
    }
    chunks = []
    with httpx.stream(
        "POST", f"{emulator.base_url}/api/features?isStreaming=true", headers=H, json=body
    ) as r:
        chunks = list(r.iter_raw())
    whole = b"".join(chunks).decode("utf-8")
    assert "“é?”" in whole
    broken = 0
    for c in chunks:
        try:
            c.decode("utf-8")
        except UnicodeDecodeError:
            broken += 1
    assert broken > 0  # some chunk boundary falls inside a character


def test_legacy_two_step_and_unsupported(emulator: Emulator) -> None:
    emulator.legacy_mode = "two_step"
    data = legacy(emulator).json()["data"]
    text = httpx.get(emulator.base_url + data["streamingUrl"], headers=H).text
    assert "You asked" in text
    emulator.legacy_mode = "unsupported"
    r = legacy(emulator)
    assert r.status_code == 400 and "Unsupported feature type" in r.json()["message"]


def test_openai_compatible_stream(emulator: Emulator) -> None:
    import base64

    url = "data:image/png;base64," + base64.b64encode(png((250, 250, 0), (12, 34))).decode()
    body = {
        "model": "gpt-4o",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    }
    auth = {"Authorization": "Bearer test-key"}
    with (
        httpx.Client() as c,
        connect_sse(
            c, "POST", f"{emulator.base_url}/v1/chat/completions", headers=auth, json=body
        ) as source,
    ):
        datas = [e.data for e in source.iter_sse()]
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(d) for d in datas[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert "12×34, mostly yellow" in text
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    r = httpx.post(f"{emulator.base_url}/v1/chat/completions", json=body)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(("retry_after", "header"), [(2, "2"), (None, None)])
def test_rate_limit_fault(emulator: Emulator, retry_after: object, header: object) -> None:
    emulator.add_fault("rate_limit", retry_after=retry_after)
    r = httpx.post(f"{emulator.base_url}/api/chat-with-ai", headers=H, json=current("x", []))
    assert r.status_code == 429 and r.headers.get("retry-after") == header
    ok = httpx.post(f"{emulator.base_url}/api/chat-with-ai", headers=H, json=current("x", []))
    assert ok.status_code == 200  # the fault was used up


def test_html_error_and_reset_faults(emulator: Emulator) -> None:
    emulator.add_fault("html_error", status=522)
    r = httpx.post(f"{emulator.base_url}/api/chat-with-ai", headers=H, json=current("x", []))
    assert r.status_code == 522 and r.text.lstrip().startswith("<!DOCTYPE html>")
    emulator.add_fault("reset")
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{emulator.base_url}/api/chat-with-ai", headers=H, json=current("x", []))
    assert emulator.billed_turns == 0


def sse_events(emu: Emulator) -> list[tuple[str, str]]:
    with httpx.Client() as client, connect_sse(
        client, "POST", f"{emu.base_url}/api/chat-with-ai?isStreaming=true", headers=H,
        json=current("stream me", []),
    ) as source:  # fmt: skip
        return [(e.event, e.data) for e in source.iter_sse()]


def test_cut_and_error_event_and_duplicate_faults(emulator: Emulator) -> None:
    emulator.add_fault("cut", after_chunks=2)
    with pytest.raises(httpx.RemoteProtocolError):
        sse_events(emulator)
    emulator.add_fault("error_event", after_chunks=2, message="boom")
    events = sse_events(emulator)
    assert [k for k, _ in events] == ["content", "content", "error"]
    assert json.loads(events[-1][1]) == {"message": "boom"}
    emulator.add_fault("duplicate_final")
    events = sse_events(emulator)
    contents = [json.loads(d)["content"] for k, d in events if k == "content"]
    assert contents[-1] == "".join(contents[:-1])


def test_stall_does_not_block_other_requests_or_stop() -> None:
    emu = Emulator().start()
    emu.add_fault("stall", after_chunks=1, seconds=60)
    done = threading.Event()

    def stalled() -> None:
        with contextlib.suppress(httpx.HTTPError):
            sse_events(emu)
        done.set()

    threading.Thread(target=stalled, daemon=True).start()
    time.sleep(0.3)
    r = httpx.get(f"{emu.base_url}/models", headers=H)  # served meanwhile
    assert r.status_code == 200
    t0 = time.monotonic()
    emu.stop()
    assert done.wait(10) and time.monotonic() - t0 < 10


def test_slow_fault_paces_chunks(emulator: Emulator) -> None:
    emulator.add_fault("slow", tokens_per_second=50)
    t0 = time.monotonic()
    events = sse_events(emulator)
    n = sum(1 for k, _ in events if k == "content")
    assert time.monotonic() - t0 >= (n - 1) / 50 * 0.9  # the emulator waits; a lower bound


def test_cli_prints_how_to_connect() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "visionchat.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "visionchat emulator on http://127.0.0.1:" in line
        url = line.split()[3]
        assert httpx.get(f"{url}/models", headers=H).status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)
