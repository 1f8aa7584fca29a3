"""The 1min.ai endpoints, current and legacy, as the service behaves.

Validation follows the service, traps included: the current endpoint accepts
``imageList`` and silently ignores it; uploads need a file name with an
extension; the legacy endpoint can answer as the live service now does
("Unsupported feature type").
"""

from __future__ import annotations

import io
import json
import time
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..catalog import vision_models
from . import _answers
from ._server import Emulator, JSONResponse, Request, StreamResponse

__all__ = ["ROUTES", "multipart_files"]

CURRENT = "UNIFY_CHAT_WITH_AI"
LEGACY = "CHAT_WITH_IMAGE"
# A model that cannot see images, so clients can test that path.
TEXT_ONLY = ("deepseek-chat", "DeepSeek Chat", "deepseek")
_EXT_FORMAT = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status, {"errorCode": code, "message": message, **extra})


def _authorized(emu: Emulator, req: Request) -> JSONResponse | None:
    if req.headers.get("api-key") == emu.api_key:
        return None
    return JSONResponse(
        401,
        {
            "success": False,
            "error": {"code": "UNAUTHORIZED", "message": "Invalid API key provided"},
        },
    )


def _known_models() -> dict[str, bool]:
    known = {m.id: True for m in vision_models()}
    known[TEXT_ONLY[0]] = False
    return known


# -- assets --------------------------------------------------------------------


def multipart_files(req: Request) -> list[tuple[str, str, bytes]]:
    """(field name, file name, bytes) of each file part of a multipart body."""
    head = f"Content-Type: {req.headers.get('content-type', '')}\r\n\r\n".encode()
    msg = BytesParser(policy=HTTP).parsebytes(head + req.body)
    out = []
    if msg.is_multipart():
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            filename = part.get_filename()
            if filename is None:
                continue
            payload = part.get_payload(decode=True)
            out.append((str(name), filename, payload if isinstance(payload, bytes) else b""))
    return out


def upload(emu: Emulator, req: Request) -> JSONResponse:
    if (denied := _authorized(emu, req)) is not None:
        return denied
    files = [f for f in multipart_files(req) if f[0] == "asset"]
    if not files:
        return _error(400, "BAD_REQUEST", "No file in field 'asset'")
    _, filename, data = files[0]
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    unsupported = _error(400, "UNSUPPORTED_FILE_TYPE", "The file type isn't supported")
    if ext not in _EXT_FORMAT:
        return unsupported
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return unsupported
    if fmt != _EXT_FORMAT[ext]:
        return unsupported
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    with emu._lock:
        key = f"images/{stamp}_{len(emu.uploads) + 1:03d}_{filename}"
        emu.uploads[key] = data
    mime = Image.MIME.get(fmt or "", "application/octet-stream")
    return JSONResponse(
        200,
        {
            "asset": {
                "key": key,
                "mimetype": mime,
                "size": len(data),
                "location": f"https://s3.example.invalid/{key}",
                "acl": "private",
            },
            "fileContent": {
                "uuid": str(uuid.uuid4()),
                "path": key,
                "type": ext,
                "status": "ACTIVE",
            },
        },
    )


# -- conversations, results, models --------------------------------------------


def create_conversation(emu: Emulator, req: Request) -> JSONResponse:
    if (denied := _authorized(emu, req)) is not None:
        return denied
    body = req.json if isinstance(req.json, dict) else {}
    title = str(body.get("title", ""))[:91]
    cid = str(uuid.uuid4())
    with emu._lock:
        emu.conversations[cid] = {"title": title, "type": body.get("type"), "prompts": []}
    return JSONResponse(
        200,
        {
            "conversation": {
                "uuid": cid,
                "title": title,
                "status": "ACTIVE",
                "type": body.get("type"),
            }
        },
    )


def delete_conversation(emu: Emulator, req: Request) -> JSONResponse:
    if (denied := _authorized(emu, req)) is not None:
        return denied
    cid = req.path.rsplit("/", 1)[-1]
    with emu._lock:
        gone = emu.conversations.pop(cid, None)
    if gone is None:
        return _error(404, "NOT_FOUND", f"Conversation {cid} not found")
    return JSONResponse(200, {"message": "deleted"})


def result(emu: Emulator, req: Request) -> JSONResponse:
    if (denied := _authorized(emu, req)) is not None:
        return denied
    rid = req.path.rsplit("/", 1)[-1]
    with emu._lock:
        record = emu.records.get(rid)
    return JSONResponse(200, {"aiRecord": record})


def list_models(emu: Emulator, req: Request) -> JSONResponse:
    if (denied := _authorized(emu, req)) is not None:
        return denied
    rows = [
        {
            "modelId": m.id,
            "name": m.name,
            "provider": m.vendor,
            "status": "ACTIVE",
            "modality": {"INPUT": ["text", "image"], "OUTPUT": ["text"]},
            "creditMetadata": {"input": m.input_price, "output": m.output_price},
        }
        for m in vision_models()
    ]
    rows.append(
        {
            "modelId": TEXT_ONLY[0],
            "name": TEXT_ONLY[1],
            "provider": TEXT_ONLY[2],
            "status": "ACTIVE",
            "modality": {"INPUT": ["text"], "OUTPUT": ["text"]},
        }
    )
    return JSONResponse(200, {"models": rows})


# -- chat ------------------------------------------------------------------------


def _turn(
    emu: Emulator, req: Request, *, legacy: bool
) -> tuple[dict[str, Any], str, list[bytes], str | None] | JSONResponse:
    """Validate a chat request; return (record, answer, images, conversation id)."""
    if (denied := _authorized(emu, req)) is not None:
        return denied
    body = req.json if isinstance(req.json, dict) else None
    if body is None:
        return _error(400, "BAD_REQUEST", "Body must be JSON")
    feature = CURRENT if not legacy else LEGACY
    if body.get("type") != feature:
        return _error(400, "UNKNOWN_ERROR", f"Unsupported feature type: {body.get('type')}")
    if legacy and emu.legacy_mode == "unsupported":
        return _error(400, "UNKNOWN_ERROR", f"Unsupported feature type: {LEGACY}")
    model = str(body.get("model", ""))
    known = _known_models()
    if model not in known:
        return _error(
            400, "UNSUPPORTED_MODEL", f"Model {model} is not supported for feature {feature}"
        )
    prompt_object = body.get("promptObject") or {}
    prompt = str(prompt_object.get("prompt", ""))
    if legacy:
        keys = list(prompt_object.get("imageList") or [])
        cid = body.get("conversationId")
    else:
        keys = list((prompt_object.get("attachments") or {}).get("images") or [])
        cid = prompt_object.get("conversationId")  # imageList here is ignored, as upstream
    if cid in (None, "", LEGACY):
        cid = None
    images = []
    with emu._lock:
        for key in keys:
            if key not in emu.uploads:
                return _error(
                    400,
                    "EXTERNAL_API_RESPONSE_WITH_ERROR",
                    "The provider rejected the request",
                    details=f"image {key} not found",
                )
            images.append(emu.uploads[key])
    if images and not known[model]:
        return _error(
            400,
            "EXTERNAL_API_RESPONSE_WITH_ERROR",
            "The provider rejected the request",
            details=f"{model} does not support image input",
        )
    with emu._lock:
        conv = emu.conversations.setdefault(cid, {"title": "", "prompts": []}) if cid else None
        earlier = list(conv["prompts"]) if conv else []
        if conv is not None:
            conv["prompts"].append(prompt)
    default = _answers.compose(prompt, images, model=model, turn=len(earlier) + 1, earlier=earlier)
    answer = emu.take_answer(default)
    cin, cout = _answers.credits_for(prompt, images, answer)
    rid = str(uuid.uuid4())
    record = {
        "uuid": rid,
        "model": model,
        "type": feature,
        "status": "SUCCESS",
        "conversationId": cid,
        "aiRecordDetail": {"promptObject": prompt_object, "resultObject": [answer]},
        "metadata": {
            "credit": cin + cout,
            "inputCredit": cin,
            "outputCredit": cout,
            "inputToken": 0,
            "outputToken": 0,
        },
    }
    with emu._lock:
        emu.records[rid] = record
    emu.bill(cin + cout)
    return record, answer, images, cid


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def chat_current(emu: Emulator, req: Request) -> JSONResponse | StreamResponse:
    turn = _turn(emu, req, legacy=False)
    if isinstance(turn, JSONResponse):
        return turn
    record, answer, _, _ = turn
    if req.query.get("isStreaming") != "true":
        return JSONResponse(200, {"aiRecord": record})
    return StreamResponse(
        content_type="text/event-stream; charset=utf-8",
        chunks=[_sse("content", {"content": t}) for t in _answers.tokens(answer)],
        tail=[
            b": keep-alive\n\n",
            _sse("result", {"aiRecord": record}),
            _sse("done", {"message": "Stream completed"}),
        ],
        error_chunk=lambda message: _sse("error", {"message": message}),
        duplicate_chunk=lambda: _sse("content", {"content": answer}),
    )


def _raw_chunks(text: str, size: int = 7) -> list[bytes]:
    """Fixed-size byte slices: multi-byte characters get split across chunks."""
    data = text.encode("utf-8")
    return [data[i : i + size] for i in range(0, len(data), size)]


def chat_legacy(emu: Emulator, req: Request) -> JSONResponse | StreamResponse:
    turn = _turn(emu, req, legacy=True)
    if isinstance(turn, JSONResponse):
        return turn
    record, answer, _, cid = turn
    if req.query.get("isStreaming") != "true":
        return JSONResponse(200, {"aiRecord": record})
    if emu.legacy_mode == "two_step":
        sid = record["uuid"]
        with emu._lock:
            emu.pending_streams[sid] = answer
        return JSONResponse(
            200,
            {
                "status": "success",
                "data": {
                    "conversationId": cid,
                    "aiRecordId": sid,
                    "streamingUrl": f"/api/features/stream/{sid}",
                },
            },
        )
    return _raw_stream(answer)


def _raw_stream(answer: str) -> StreamResponse:
    return StreamResponse(
        content_type="text/plain; charset=utf-8",
        chunks=_raw_chunks(answer),
        tail=[],
        error_chunk=lambda message: b"",  # raw text has no way to say "error"
    )


def legacy_stream(emu: Emulator, req: Request) -> JSONResponse | StreamResponse:
    if (denied := _authorized(emu, req)) is not None:
        return denied
    sid = req.path.rsplit("/", 1)[-1]
    with emu._lock:
        answer = emu.pending_streams.pop(sid, None)
    if answer is None:
        return _error(404, "NOT_FOUND", f"No stream {sid}")
    return _raw_stream(answer)


ROUTES = [
    ("POST", "/api/assets", upload),
    ("POST", "/api/chat-with-ai", chat_current),
    ("POST", "/api/features", chat_legacy),
    ("GET", "/api/features/stream/", legacy_stream),
    ("POST", "/api/conversations", create_conversation),
    ("DELETE", "/api/conversations/", delete_conversation),
    ("GET", "/api/results/", result),
    ("GET", "/models", list_models),
]
