"""An OpenAI-compatible ``/v1`` API: chat completions (streamed or not) and models.

Enough of the protocol for OpenAI, Ollama, vLLM and LM Studio clients: content
parts with ``image_url`` data URLs (decoded and described in the answer),
``stream_options.include_usage``, ``data: [DONE]``, and OpenAI-style error bodies.
A model whose id starts with ``missing-`` does not exist, for error tests.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from typing import Any

from . import _answers
from ._server import Emulator, JSONResponse, Request, StreamResponse

__all__ = ["ROUTES"]


def _error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(status, {"error": {"message": message, "type": kind, "code": code}})


def _authorized(emu: Emulator, req: Request) -> JSONResponse | None:
    if req.headers.get("authorization") == f"Bearer {emu.api_key}":
        return None
    return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")


def _images(content: Any) -> list[bytes] | JSONResponse:
    out: list[bytes] = []
    if not isinstance(content, list):
        return out
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "image_url":
            continue
        url = str((part.get("image_url") or {}).get("url", ""))
        if not url.startswith("data:") or ";base64," not in url:
            return _error(400, "Only data URLs are supported here.", "invalid_request_error")
        try:
            out.append(base64.b64decode(url.split(",", 1)[1], validate=True))
        except (binascii.Error, ValueError):
            return _error(400, "Invalid base64 image data.", "invalid_request_error")
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def chat(emu: Emulator, req: Request) -> JSONResponse | StreamResponse:
    if (denied := _authorized(emu, req)) is not None:
        return denied
    body = req.json if isinstance(req.json, dict) else None
    if body is None:
        return _error(400, "The body must be JSON.", "invalid_request_error")
    model = str(body.get("model", ""))
    if not model or model.startswith("missing-"):
        return _error(
            404, f"The model `{model}` does not exist.", "invalid_request_error", "model_not_found"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "messages must be a non-empty list.", "invalid_request_error")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return _error(400, "No user message.", "invalid_request_error")
    last = users[-1]
    images = _images(last.get("content"))
    if isinstance(images, JSONResponse):
        return images
    prompt = _text(last.get("content"))
    earlier = [_text(m.get("content")) for m in users[:-1]]
    fmt = body.get("response_format")
    wanted = ((fmt or {}).get("json_schema") or {}).get("schema") if isinstance(fmt, dict) else None
    if isinstance(wanted, dict):  # structured output: bare JSON, as the real API sends
        default = _answers.structured(wanted, images, fenced=False)
    else:
        default = _answers.compose(prompt, images, model=model, turn=len(users), earlier=earlier)
    answer = emu.take_answer(default)
    cin, cout = _answers.credits_for(prompt, images, answer)
    emu.bill(cin + cout)
    prompt_tokens = sum(len(_text(m.get("content"))) // 4 + 1 for m in users) + 85 * len(images)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(_answers.tokens(answer)),
        "total_tokens": prompt_tokens + len(_answers.tokens(answer)),
    }
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if not body.get("stream"):
        return JSONResponse(
            200,
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            },
        )

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        obj = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(obj)}\n\n".encode()

    tokens = _answers.tokens(answer)
    chunks = [chunk({"role": "assistant", "content": tokens[0]})]
    chunks += [chunk({"content": t}) for t in tokens[1:]]
    tail = [chunk({}, "stop")]
    if (body.get("stream_options") or {}).get("include_usage"):
        usage_chunk = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        tail.append(f"data: {json.dumps(usage_chunk)}\n\n".encode())
    tail.append(b"data: [DONE]\n\n")
    return StreamResponse(
        content_type="text/event-stream; charset=utf-8",
        chunks=chunks,
        tail=tail,
        error_chunk=lambda message: (
            f"data: {json.dumps({'error': {'message': message, 'type': 'server_error'}})}\n\n"
        ).encode(),
    )


def models(emu: Emulator, req: Request) -> JSONResponse:
    if (denied := _authorized(emu, req)) is not None:
        return denied
    from ..catalog import vision_models

    return JSONResponse(
        200,
        {
            "object": "list",
            "data": [
                {"id": m.id, "object": "model", "created": 0, "owned_by": m.vendor}
                for m in vision_models()
            ],
        },
    )


ROUTES = [
    ("POST", "/v1/chat/completions", chat),
    ("GET", "/v1/models", models),
]
