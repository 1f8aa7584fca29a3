"""Any OpenAI-compatible chat completions endpoint: OpenAI, Ollama, vLLM, LM Studio.

These servers keep no history, so every turn sends the conversation so far
(the ``Conversation`` decides what fits the context); images travel inline as
data URLs, so there is nothing to upload.  Retries, timeouts and error reading
are the shared ones of ``_http``: a stream is never re-sent after its first byte.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from httpx_sse import EventSource

from .. import catalog
from ..errors import StreamInterruptedError
from ..images import PreparedImage
from ._http import RetryPolicy, Service, make_timeout, send, stream_error
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

__all__ = ["DEFAULT_BASE_URL", "OpenAIProvider"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider:
    """An OpenAI-compatible backend.

    ``base_url`` (or ``OPENAI_BASE_URL``) selects the server, e.g.
    ``http://localhost:11434/v1`` for Ollama; ``api_key`` (or ``OPENAI_API_KEY``)
    may be left out for local servers that need none.  ``detail`` is OpenAI's
    image detail: ``"auto"``, ``"low"`` or ``"high"``.
    """

    name = "openai"
    keeps_history = False

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        detail: str = "auto",
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.__key = api_key or os.environ.get("OPENAI_API_KEY") or ""
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        self.detail = detail
        self.timeout = make_timeout(timeout)
        self.retry = RetryPolicy(max_retries=max_retries, backoff=retry_backoff)
        host = urlsplit(self.base_url).netloc or self.base_url
        self._service = Service(
            "OpenAI" if host == "api.openai.com" else f"the OpenAI-compatible server at {host}",
            "set OPENAI_API_KEY or pass api_key=... (local servers such as Ollama need none)",
        )
        self._client = http_client
        self._owns_client = http_client is None

    def __repr__(self) -> str:
        key = "'***'" if self.__key else "None"
        return f"OpenAIProvider(base_url={self.base_url!r}, api_key={key})"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        return self._client

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream, application/json"}
        if self.__key:
            headers["Authorization"] = f"Bearer {self.__key}"
        return headers

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
        self._client = None

    # -- models ----------------------------------------------------------------

    def model_info(self, model: str) -> ModelInfo | None:
        return catalog.get_model(model)

    async def list_models(self) -> list[ModelInfo]:
        """The server's models; vision is assumed unless the catalog knows otherwise."""

        def build() -> httpx.Request:
            return self._http().build_request(
                "GET", self.base_url + "/models", headers=self._headers()
            )

        response = await send(self._http(), build, self._service, self.retry)
        try:
            body = json.loads(await response.aread() or b"{}")
        finally:
            await response.aclose()
        rows = body.get("data") if isinstance(body, dict) else None
        listed = [
            ModelInfo(id=str(r["id"]), vendor=str(r.get("owned_by") or ""))
            for r in rows or []
            if isinstance(r, dict) and r.get("id")
        ]
        return catalog.merge(listed)

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
        out = [{"role": t.role, "content": self._content(t.text, t.images)} for t in history]
        out.append({"role": "user", "content": self._content(prompt, images)})
        return out

    async def stream(self, request: TurnRequest) -> AsyncIterator[StreamEvent]:
        from ..errors import NotVisionCapableError

        info = self.model_info(request.model)
        if request.images and info is not None and not info.vision:
            raise NotVisionCapableError(
                f"{request.model} cannot see images. Pick a model that can, or ask without images."
            )
        if request.images:
            yield UploadProgress(len(request.images), len(request.images))
        body: dict[str, Any] = {
            "model": request.model,
            "messages": self.messages(request.history, request.prompt, request.images),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for key in ("temperature", "max_tokens", "top_p", "seed"):
            if key in request.options:
                body[key] = request.options[key]
        payload = json.dumps(body).encode()
        headers = {**self._headers(), "Content-Type": "application/json"}

        def build() -> httpx.Request:
            return self._http().build_request(
                "POST", self.base_url + "/chat/completions", content=payload, headers=headers
            )

        response = await send(self._http(), build, self._service, self.retry)
        text, usage, model = "", None, request.model
        try:
            async for sse in EventSource(response).aiter_sse():
                data = sse.data
                if data == "[DONE]":
                    break
                if not data:
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    err = chunk["error"]
                    message = err.get("message") if isinstance(err, dict) else str(err)
                    raise StreamInterruptedError(
                        f"{self._service.name} reported an error during the answer: {message}. "
                        "The text received so far is kept; retry the turn to ask again.",
                        partial_text=text,
                    )
                choices = chunk.get("choices")
                if choices:
                    delta = choices[0].get("delta") or {}
                    piece = delta.get("content")
                    if piece:
                        text += piece
                        yield TextDelta(piece)
                if chunk.get("usage"):
                    u = chunk["usage"]
                    usage = Usage(u.get("prompt_tokens"), u.get("completion_tokens"))
                model = chunk.get("model") or model
        except httpx.TransportError as exc:
            raise stream_error(exc, self._service, text) from None
        except ValueError:
            raise StreamInterruptedError(
                f"{self._service.name} sent a malformed stream; the text so far is kept.",
                partial_text=text,
            ) from None
        finally:
            await response.aclose()
        yield TurnResult(model=model, usage=usage)
