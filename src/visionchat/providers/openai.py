"""Any OpenAI-compatible chat completions endpoint: OpenAI, Ollama, vLLM, LM Studio.

These servers keep no history, so every turn sends the conversation so far
(the ``Conversation`` decides what fits the context); images travel inline as
data URLs, so there is nothing to upload.  Retries, timeouts and error reading
are the shared ones of ``_http``: a stream is never re-sent after its first byte.

Servers differ in small ways, all handled here: some answer a streamed request
with one JSON body, some reject ``stream_options``, some send content as a list
of parts; a refusal arrives in its own field.  A stream that stops without its
end marker (``[DONE]`` or a ``finish_reason``) is reported as interrupted, not
passed off as a complete answer.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from .. import catalog
from .._secret import Secret
from ..errors import BadRequestError, NotVisionCapableError, StreamInterruptedError
from ..images import PreparedImage
from ..ratelimit import RateLimiter
from ._http import (
    ClientSource,
    RetryPolicy,
    Service,
    finish_body,
    send,
    stream_blocks,
    stream_error,
)
from ._sse import SSEParser
from .base import (
    HistoryTurn,
    ModelInfo,
    StreamEvent,
    TextDelta,
    TurnRequest,
    TurnResult,
    UploadProgress,
    Usage,
)

__all__ = ["DEFAULT_BASE_URL", "DETAILS", "OpenAIProvider", "listed_models"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DETAILS = ("auto", "low", "high")
_OPTIONS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "reasoning_effort",
    "response_format",
)
# Listed models that cannot take an image: not chat models at all (embeddings,
# speech, image generation...), or chat models known to be text-only.
_NOT_VISION = re.compile(
    r"embed|whisper|tts|dall-e|davinci|babbage|moderation|transcribe|audio|realtime|"
    r"search|^gpt-image|^sora|^gpt-3\.5|^gpt-4(-0314|-0613)?$|^o1-mini|^o3-mini|^text-",
    re.I,
)


def listed_models(rows: Iterable[Any]) -> list[ModelInfo]:
    """``GET /models`` rows as ModelInfo, completed from the catalog.

    A model the catalog does not know is assumed to see images unless its id
    says otherwise: on a local server the user chose what to run.
    """
    out: list[ModelInfo] = []
    for row in rows:
        if not isinstance(row, dict) or not row.get("id"):
            continue
        mid = str(row["id"])
        known = catalog.get_model(mid)
        vision = known.vision if known else not _NOT_VISION.search(mid)
        out.append(ModelInfo(id=mid, vision=vision))  # vendor from the catalog, not owned_by
    return catalog.merge(out)


class OpenAIProvider:
    """An OpenAI-compatible backend.

    ``base_url`` (or ``OPENAI_BASE_URL``) selects the server, e.g.
    ``http://localhost:11434/v1`` for Ollama; ``api_key`` (or ``OPENAI_API_KEY``)
    may be left out for local servers that need none.  ``detail`` is OpenAI's
    image detail: ``"auto"``, ``"low"`` (cheap, 512 px) or ``"high"``.
    """

    name = "openai"
    keeps_history = False

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        detail: str = "auto",
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        http_client: httpx.AsyncClient | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        if detail not in DETAILS:
            raise ValueError(f"detail must be one of {', '.join(DETAILS)}, not {detail!r}")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        # Masked, unpicklable, and revealed only in ``_headers``.
        self._key = key if isinstance(key, Secret) else Secret.of(key)
        url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = url.rstrip("/")
        self.detail = detail
        self.retry = RetryPolicy(max_retries=max_retries, backoff=retry_backoff)
        host = urlsplit(self.base_url).netloc or self.base_url
        self._service = Service(
            "OpenAI" if host == "api.openai.com" else f"the OpenAI-compatible server at {host}",
            "set OPENAI_API_KEY or pass api_key=... (local servers such as Ollama need none)",
        )
        self._clients = ClientSource(http_client, timeout)
        #: Paces every request when set; ``visionchat.batch`` sets one and it
        #: learns the server's limit from its ``x-ratelimit-*`` headers.
        self.rate_limiter = rate_limiter

    def __repr__(self) -> str:
        key = "'***'" if self._key is not None else "None"
        return f"OpenAIProvider(base_url={self.base_url!r}, api_key={key})"

    def _http(self) -> httpx.AsyncClient:
        return self._clients.get()

    def _headers(self) -> dict[str, str]:
        # Per request, never as a client default: a client's headers are on view.
        headers = {"Accept": "text/event-stream, application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        return headers

    async def aclose(self) -> None:
        await self._clients.aclose()

    # -- models ----------------------------------------------------------------

    def model_info(self, model: str) -> ModelInfo | None:
        """The catalog's entry; an unknown model (a local one) is assumed to see images."""
        return catalog.get_model(model) or listed_models([{"id": model}])[0]

    async def list_models(self) -> list[ModelInfo]:
        """The server's models, completed from the catalog (see ``listed_models``)."""

        def build() -> httpx.Request:
            return self._clients.build_request(
                "GET", self.base_url + "/models", headers=self._headers()
            )

        response = await send(self._http(), build, self._service, self.retry,
                              key=self._key, limiter=self.rate_limiter)  # fmt: skip
        try:
            body = json.loads(await response.aread() or b"{}")
        except ValueError:
            body = None
        finally:
            await response.aclose()
        rows = body.get("data") if isinstance(body, dict) else None
        return listed_models(rows if isinstance(rows, list) else [])

    # -- a turn ------------------------------------------------------------------

    async def upload(self, image: PreparedImage) -> str:
        return image.to_data_url()  # sent inline; nothing to upload

    def _content(self, text: str, images: Sequence[PreparedImage]) -> Any:
        if not images:
            return text
        parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
        parts += [
            {"type": "image_url", "image_url": {"url": img.to_data_url(), "detail": self.detail}}
            for img in images
        ]
        return parts

    def messages(
        self, history: Sequence[HistoryTurn], prompt: str, images: Sequence[PreparedImage]
    ) -> list[dict[str, Any]]:
        """The chat messages of a turn: earlier turns, then the new question.

        Only user messages carry images (the API rejects image parts from the
        assistant).
        """
        out = [
            {"role": t.role, "content": self._content(t.text, t.images if t.role == "user" else ())}
            for t in history
        ]
        out.append({"role": "user", "content": self._content(prompt, images)})
        return out

    async def stream(self, request: TurnRequest) -> AsyncIterator[StreamEvent]:
        info = self.model_info(request.model)
        if request.images and info is not None and not info.vision:
            raise NotVisionCapableError(
                f"{request.model} cannot see images. Pick a model that can "
                "(conv.models() lists them), or ask without images.",
                code="not_vision_capable",
            )
        if request.images:
            yield UploadProgress(len(request.images), len(request.images))
        body: dict[str, Any] = {
            "model": request.model,
            "messages": self.messages(request.history, request.prompt, request.images),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        body.update({k: request.options[k] for k in _OPTIONS if k in request.options})
        try:
            response = await self._post(body)
        except BadRequestError as exc:
            # Older servers reject stream_options (usage is then simply not
            # reported) or structured output (the prompt still asks for JSON).
            dropped = [k for k in ("stream_options", "response_format") if k in str(exc)]
            if not dropped or not all(k in body for k in dropped):
                raise
            for key in dropped:
                del body[key]
            response = await self._post(body)
        parsed = _Stream(request.model, self._key)
        try:
            ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype == "application/json":
                async for event in _whole_answer(await response.aread(), request.model):
                    yield event
            elif ctype == "text/event-stream":
                sse = SSEParser()
                blocks = stream_blocks(response)
                async for block in blocks:  # once per chunk: lean
                    for _event, data in sse.feed(block):
                        piece = parsed.feed(data, self._service)
                        if piece:
                            yield TextDelta(piece)
                        elif parsed.done:
                            break
                    if parsed.done:
                        await finish_body(blocks)
                        break
                yield parsed.result(self._service)
            else:  # a proxy's or captive portal's page, a wrong base_url
                raise BadRequestError(
                    f"{self._service.name} answered with {ctype or 'no content type'}, not a "
                    "chat stream. Check that base_url points at an OpenAI-compatible /v1 "
                    "endpoint (for example http://localhost:11434/v1 for Ollama).",
                    status=response.status_code,
                )
        except httpx.TransportError as exc:
            raise stream_error(exc, self._service, parsed.text) from None
        finally:
            await response.aclose()

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        payload = json.dumps(body).encode()

        def build() -> httpx.Request:
            # Headers made here, not held by this frame or closure: a failure's
            # traceback (printed with its variables, or kept by an error tracker)
            # would show them.
            headers = {**self._headers(), "Content-Type": "application/json"}
            return self._clients.build_request(
                "POST", self.base_url + "/chat/completions", content=payload, headers=headers
            )

        return await send(self._http(), build, self._service, self.retry,
                              key=self._key, limiter=self.rate_limiter)  # fmt: skip


def _text_of(piece: Any) -> str:
    """Delta or message content: a string, or (some servers) a list of text parts."""
    if isinstance(piece, str):
        return piece
    if isinstance(piece, list):
        return "".join(
            str(p.get("text") or "")
            for p in piece
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    return Usage(u.get("prompt_tokens"), u.get("completion_tokens"))


async def _whole_answer(raw: bytes, model: str) -> AsyncIterator[StreamEvent]:
    """A server that ignored ``stream: true`` and sent one chat.completion body."""
    try:
        body = json.loads(raw)
        message = body["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise StreamInterruptedError(
            "The server sent an answer that is not a chat completion; nothing was kept. "
            "Check that base_url points at an OpenAI-compatible /v1 endpoint.",
            partial_text="",
        ) from None
    text = _text_of(message.get("content")) or _text_of(message.get("refusal"))
    if text:
        yield TextDelta(text)
    yield TurnResult(model=str(body.get("model") or model), usage=_usage(body.get("usage")))


class _Stream:
    """The state of one streamed answer: text so far, usage, whether it ended."""

    __slots__ = ("done", "finished", "key", "model", "named", "parts", "usage")

    def __init__(self, model: str, key: Secret | None = None) -> None:
        self.parts: list[str] = []  # joined only when needed: += on an attribute copies
        self.usage: Usage | None = None
        self.finished = False  # an end marker came: [DONE] or a finish_reason
        self.done = False  # [DONE] came: nothing after it belongs to the answer
        self.named = False
        self.model = model
        self.key = key  # to blank it out of an error the server sends

    def feed(self, data: str, service: Service) -> str:
        """One event's data; returns the new text (often the only thing in it)."""
        if data == "[DONE]":
            self.finished = self.done = True
            return ""
        if not data:
            return ""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise StreamInterruptedError(
                f"{service.name} sent a malformed stream; the text so far is kept.",
                partial_text=self.text,
            ) from None
        if chunk.__class__ is not dict:
            return ""
        if "error" in chunk:
            err = chunk["error"]
            message = str(err.get("message") if isinstance(err, dict) else err)
            if self.key is not None:
                message = self.key.redact(message)
            raise StreamInterruptedError(
                f"{service.name} reported an error during the answer: {message}. "
                "The text received so far is kept; retry the turn to ask again.",
                partial_text=self.text,
            )
        if not self.named:
            self.model, self.named = chunk.get("model") or self.model, True
        if chunk.get("usage"):
            self.usage = _usage(chunk["usage"])
        choices = chunk.get("choices")
        if not choices or choices[0].__class__ is not dict:
            return ""
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finished = True
        delta = choice.get("delta") or {}
        piece = delta.get("content")
        if piece.__class__ is not str:  # the hot path is a plain string
            piece = _text_of(piece) or _text_of(delta.get("refusal"))
        if piece:
            self.parts.append(piece)
            return piece
        return ""

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def result(self, service: Service) -> TurnResult:
        if not self.finished:
            kept = f"; the {len(self.text)} characters received are kept" if self.text else ""
            raise StreamInterruptedError(
                f"The answer from {service.name} ended without its end marker{kept}. "
                "It may be cut short: retry the turn to ask again.",
                partial_text=self.text,
            )
        return TurnResult(model=self.model, usage=self.usage)
