"""1min.ai: upload images as assets, then chat about them.

Two generations of the API are spoken (see the project's notes on the service):
the current ``/api/chat-with-ai`` (the default; images in
``promptObject.attachments.images``, named-event SSE streaming) and the legacy
``/api/features`` with ``CHAT_WITH_IMAGE`` (``imageList``, raw-text streaming),
which older accounts and mirrors may still serve.  The server keeps the
history under a conversation id, so a follow-up sends only the new prompt and
images.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from .. import catalog
from .._secret import Secret
from ..errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    NotVisionCapableError,
    ServerError,
    StreamInterruptedError,
)
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
from .base import ModelInfo, StreamEvent, TextDelta, TurnRequest, TurnResult, UploadProgress

__all__ = ["DEFAULT_BASE_URL", "RATE_LIMIT", "OneMinAIProvider"]

DEFAULT_BASE_URL = "https://api.1min.ai"
#: Requests a minute the service documents for one API key.
RATE_LIMIT = 180
CURRENT, LEGACY = "UNIFY_CHAT_WITH_AI", "CHAT_WITH_IMAGE"
TITLE_LIMIT = 91
_SERVICE = Service(
    "1min.ai",
    "set the ONEMIN_API_KEY environment variable or pass api_key=... "
    "(keys are at https://app.1min.ai, under API)",
)


def _title(prompt: str) -> str:
    """A conversation title from the first prompt: at most 91 characters, cut at a word."""
    flat = " ".join(prompt.split()) or "Chat with images"
    if len(flat) <= TITLE_LIMIT:
        return flat
    cut = flat[: TITLE_LIMIT - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut + "…"


def _legacy_hint(exc: BadRequestError) -> BadRequestError:
    """The live service no longer serves the legacy feature: say what to do."""
    if "unsupported feature type" not in str(exc).lower():
        return exc
    return BadRequestError(
        "1min.ai no longer serves the legacy Chat with Image API (it answered "
        "'Unsupported feature type: CHAT_WITH_IMAGE'). Use the current API: "
        "Conversation(..., api='current'), which is the default.",
        status=exc.status,
        code=exc.code,
    )


class OneMinAIProvider:
    """The 1min.ai backend.

    ``api`` is ``"current"`` (default) or ``"legacy"``.  ``timeout`` is seconds
    (or an ``httpx.Timeout``) for connecting and between two chunks of a
    stream; ``max_retries`` and ``retry_backoff`` shape retries of requests that
    have not started answering.  The key is read from ``ONEMIN_API_KEY`` (or
    ``ONE_MIN_AI_API_KEY``) when not given, and is never shown; ``base_url`` from
    ``ONEMIN_BASE_URL`` (a mirror, or the emulator in tests).
    """

    name = "1min"
    keeps_history = True

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        api: str = "current",
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        http_client: httpx.AsyncClient | None = None,
        web_search_sites: int = 3,
        web_search_words: int = 1000,
        history_limit: int = 10,
        with_memories: bool = False,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        key = api_key or os.environ.get("ONEMIN_API_KEY") or os.environ.get("ONE_MIN_AI_API_KEY")
        if not key:
            raise AuthenticationError(
                "No 1min.ai API key: set the ONEMIN_API_KEY environment variable or pass "
                "api_key=... (keys are at https://app.1min.ai, under API). Without a key, "
                "provider='offline' runs the offline demo model."
            )
        if api not in ("current", "legacy"):
            raise BadRequestError(f"api must be 'current' or 'legacy', not {api!r}")
        # Masked, unpicklable, and revealed only in ``_request``.
        self._key = key if isinstance(key, Secret) else Secret(key)
        self.base_url = (base_url or os.environ.get("ONEMIN_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        self.api = api
        self.retry = RetryPolicy(max_retries=max_retries, backoff=retry_backoff)
        self.web_search_sites = web_search_sites
        self.web_search_words = web_search_words
        self.history_limit = history_limit
        self.with_memories = with_memories
        #: Paces every request when set (``visionchat.batch`` sets one at the
        #: documented RATE_LIMIT); a lone conversation needs none.
        self.rate_limiter = rate_limiter
        self._clients = ClientSource(http_client, timeout)
        self._uploads: dict[str, asyncio.Task[str]] = {}
        self._listing: dict[str, ModelInfo] = {}

    def __repr__(self) -> str:
        return f"OneMinAIProvider(base_url={self.base_url!r}, api={self.api!r}, api_key='***')"

    # -- plumbing ------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        return self._clients.get()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Request:
        # Per request, never as a client default: a client's headers are on view.
        headers = {"API-KEY": self._key.reveal(), "Accept": "application/json, text/event-stream"}
        return self._clients.build_request(method, self.base_url + path, headers=headers, **kw)

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = await send(self._http(), lambda: self._request(method, path, **kw),
                              _SERVICE, self.retry, key=self._key,
                              limiter=self.rate_limiter)  # fmt: skip
        try:
            body = await response.aread()
        except httpx.TransportError as exc:
            raise stream_error(exc, _SERVICE, "") from None
        finally:
            await response.aclose()
        try:
            return json.loads(body) if body else {}
        except ValueError:
            raise ServerError(
                f"1min.ai answered {path} with something that is not JSON; try again.",
                retryable=True,
            ) from None

    async def aclose(self) -> None:
        await self._clients.aclose()

    # -- models --------------------------------------------------------------

    def model_info(self, model: str) -> ModelInfo | None:
        return self._listing.get(model) or catalog.get_model(model)

    async def list_models(self) -> list[ModelInfo]:
        """The service's current listing, completed from the catalog.

        Falls back to the catalog when the listing cannot be had (a bad key still
        raises, since nothing else would work either).
        """
        try:
            body = await self._json("GET", "/models", params={"feature": CURRENT})
        except AuthenticationError:
            raise
        except APIError:
            return catalog.vision_models()
        rows = body.get("models") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            return catalog.vision_models()
        listed = []
        for row in rows:
            if not isinstance(row, dict) or not row.get("modelId"):
                continue
            inputs = ((row.get("modality") or {}).get("INPUT")) or []
            listed.append(
                ModelInfo(
                    id=str(row["modelId"]),
                    name=str(row.get("name") or ""),
                    vendor=str(row.get("provider") or ""),
                    vision="image" in [str(i).lower() for i in inputs],
                    available=str(row.get("status", "ACTIVE")).upper() != "INACTIVE",
                )
            )
        merged = catalog.merge(listed)
        self._listing = {m.id: m for m in merged}
        return merged

    # -- uploads ---------------------------------------------------------------

    async def upload(self, image: PreparedImage) -> str:
        """Upload once per image (by sha256); concurrent callers share one upload."""
        task = self._uploads.get(image.sha256)
        if task is None or (task.done() and (task.cancelled() or task.exception())):
            task = asyncio.ensure_future(self._upload(image))
            self._uploads[image.sha256] = task
        return await asyncio.shield(task)

    async def _upload(self, image: PreparedImage) -> str:
        files = {"asset": (image.filename, image.data, image.mime)}
        body = await self._json("POST", "/api/assets", files=files)
        content = body.get("fileContent") if isinstance(body, dict) else None
        asset = body.get("asset") if isinstance(body, dict) else None
        key = (content or {}).get("path") or (asset or {}).get("key")
        if not key:
            raise ServerError("1min.ai accepted the upload but returned no image key; try again.")
        return str(key)

    async def _upload_all(self, images: Sequence[PreparedImage]) -> AsyncIterator[Any]:
        tasks = [asyncio.ensure_future(self.upload(img)) for img in images]
        try:
            for done, finished in enumerate(asyncio.as_completed(tasks), 1):
                await finished
                yield UploadProgress(done, len(tasks))
        finally:
            for t in tasks:
                t.cancel()
        yield [t.result() for t in tasks]

    # -- conversations ---------------------------------------------------------

    async def _conversation_id(self, request: TurnRequest) -> str | None:
        cid = request.session.get("conversation_id")
        if cid:
            return str(cid)
        if request.options.get("one_off"):
            return None  # a message without history: no conversation to create
        body = await self._json(
            "POST",
            "/api/conversations",
            json={
                "title": _title(request.prompt),
                "type": CURRENT if self.api == "current" else LEGACY,
                "model": request.model,
            },
        )
        conv = body.get("conversation") if isinstance(body, dict) else None
        conv = conv if isinstance(conv, dict) else body
        cid = (conv or {}).get("uuid") or (conv or {}).get("id")
        if not cid:
            raise ServerError("1min.ai created no conversation id; try again.", retryable=True)
        request.session["conversation_id"] = str(cid)
        return str(cid)

    async def delete_conversation(self, session: dict[str, Any]) -> None:
        """Delete the server-side conversation (already gone counts as deleted)."""
        cid = session.pop("conversation_id", None)
        if not cid:
            return
        try:
            await self._json("DELETE", f"/api/conversations/{cid}")
        except BadRequestError as exc:
            if exc.status != 404:
                raise

    # -- a turn ------------------------------------------------------------------

    def _check_vision(self, request: TurnRequest) -> None:
        info = self.model_info(request.model)
        if request.images and info is not None and not info.vision:
            raise NotVisionCapableError(
                f"{request.model} cannot see images, so nothing was uploaded. Pick a model "
                "that can (conv.models() lists them), or ask without images."
            )

    def _body(
        self, request: TurnRequest, prompt: str, keys: list[str], cid: str | None
    ) -> dict[str, Any]:
        opts = request.options
        sites = int(opts.get("num_of_site", self.web_search_sites))
        words = int(opts.get("max_word", self.web_search_words))
        mixed = bool(opts.get("is_mixed", False))
        if self.api == "legacy":
            return {
                "type": LEGACY,
                "model": request.model,
                "conversationId": cid,
                "promptObject": {
                    "prompt": prompt,
                    "imageList": keys,
                    "isMixed": mixed,
                    "webSearch": request.web_search,
                    "numOfSite": sites,
                    "maxWord": words,
                },
            }
        prompt_object: dict[str, Any] = {"prompt": prompt}
        if cid:
            prompt_object["conversationId"] = cid
        return {
            "type": CURRENT,
            "model": request.model,
            "promptObject": {
                **prompt_object,
                "attachments": {"images": keys},
                "settings": {
                    "webSearchSettings": {
                        "webSearch": request.web_search,
                        "numOfSite": sites,
                        "maxWord": words,
                    },
                    "historySettings": {
                        "isMixed": mixed,
                        "historyMessageLimit": int(opts.get("history_limit", self.history_limit)),
                    },
                    "withMemories": bool(opts.get("with_memories", self.with_memories)),
                },
            },
        }

    def _replay(self, request: TurnRequest) -> tuple[str, list[PreparedImage]]:
        """The prompt and images to send, carrying earlier turns into a new server conversation.

        The server keeps history only under its conversation id.  A forked, undone
        or reloaded conversation has turns but no id yet, so its first request
        restates them (text, and the images they showed) ahead of the new prompt.
        """
        if request.session.get("conversation_id") or not request.history:
            return request.prompt, list(request.images)
        lines = ["(Continuing an earlier conversation. What was said so far:)"]
        images: dict[str, PreparedImage] = {}
        for turn in request.history:
            who = "User" if turn.role == "user" else "Assistant"
            lines.append(f"{who}: {turn.text}")
            images.update((img.sha256, img) for img in turn.images)
        images.update((img.sha256, img) for img in request.images)
        lines.append(f"\nNow the user asks: {request.prompt}")
        return "\n".join(lines), list(images.values())

    async def stream(self, request: TurnRequest) -> AsyncIterator[StreamEvent]:
        self._check_vision(request)
        prompt, images = self._replay(request)
        keys: list[str] = []
        if images:
            async for item in self._upload_all(images):
                if isinstance(item, UploadProgress):
                    yield item
                else:
                    keys = item
        cid = await self._conversation_id(request)
        body = self._body(request, prompt, keys, cid)
        path = "/api/chat-with-ai" if self.api == "current" else "/api/features"
        if not request.options.get("stream", True):
            try:
                record = await self._json("POST", path, json=body)
            except BadRequestError as exc:
                raise _legacy_hint(exc) from None
            text, result = self._settle(record, request)
            if text:
                yield TextDelta(text)
            yield result
            return
        try:
            response = await send(
                self._http(),
                lambda: self._request("POST", path, params={"isStreaming": "true"}, json=body),
                _SERVICE,
                self.retry,
                key=self._key,
                limiter=self.rate_limiter,
            )
        except BadRequestError as exc:
            raise _legacy_hint(exc) from None
        try:
            if self.api == "current":
                async for ev in self._read_sse(response, request):
                    yield ev
            else:
                async for ev in self._read_legacy(response, request):
                    yield ev
        finally:
            await response.aclose()

    def _settle(self, body: Any, request: TurnRequest) -> tuple[str, TurnResult]:
        """Text and result from an ``aiRecord`` envelope, its status checked."""
        record = body.get("aiRecord") if isinstance(body, dict) else None
        if not isinstance(record, dict):
            raise ServerError("1min.ai answered without a result record; try again.")
        status = str(record.get("status", "SUCCESS")).upper()
        detail = record.get("aiRecordDetail") or {}
        result = detail.get("resultObject")
        text = "".join(str(r) for r in result) if isinstance(result, list) else str(result or "")
        if status != "SUCCESS":
            raise ServerError(
                f"1min.ai reports the answer as {status}"
                + (f": {text[:200]}" if text else "")
                + ". Try again, or pick another model.",
                retryable=True,
            )
        return text, self._result(record, request)

    def _result(self, record: dict[str, Any], request: TurnRequest) -> TurnResult:
        meta = record.get("metadata") or {}
        credit = meta.get("credit") if isinstance(meta, dict) else None
        cid = record.get("conversationId")
        if cid:
            request.session["conversation_id"] = str(cid)
        return TurnResult(
            model=str(record.get("model") or request.model),
            credits=float(credit) if isinstance(credit, int | float) else None,
            record_id=str(record["uuid"]) if record.get("uuid") else None,
        )

    async def _read_sse(
        self, response: httpx.Response, request: TurnRequest
    ) -> AsyncIterator[StreamEvent]:
        text = ""
        result: TurnResult | None = None
        ended = False
        sse = SSEParser()
        try:
            blocks = stream_blocks(response)
            async for block in blocks:
                for event, raw in sse.feed(block):
                    if raw.strip() == "[DONE]" or event == "done":
                        ended = True
                        break
                    try:
                        data = json.loads(raw) if raw else {}
                    except ValueError:
                        continue  # a keep-alive or a line we do not know
                    if event == "content" or (event == "message" and "content" in data):
                        chunk = str(data.get("content", ""))
                        if not chunk or (text and chunk == text):
                            continue  # the duplicated final chunk some models send
                        text += chunk
                        yield TextDelta(chunk)
                    elif event == "result":
                        record = data.get("aiRecord") if isinstance(data, dict) else None
                        if isinstance(record, dict):
                            result = self._result(record, request)
                    elif event == "error":
                        message = self._key.redact(
                            str(data.get("message") or "the model reported an error")
                        )
                        raise StreamInterruptedError(
                            f"1min.ai reported an error during the answer: {message}. "
                            "The text received so far is kept; retry the turn to ask again.",
                            partial_text=text,
                        )
                if ended:
                    await finish_body(blocks)
                    break
        except httpx.TransportError as exc:
            raise stream_error(exc, _SERVICE, text) from None
        yield result or TurnResult(model=request.model)

    async def _read_legacy(
        self, response: httpx.Response, request: TurnRequest
    ) -> AsyncIterator[StreamEvent]:
        kind = response.headers.get("content-type", "")
        if "json" in kind:
            body = json.loads(await response.aread() or b"{}")
            data = body.get("data") if isinstance(body, dict) else None
            url = data.get("streamingUrl") if isinstance(data, dict) else None
            if url:  # the two-step form: the text is read from a second URL
                if isinstance(data, dict) and data.get("conversationId"):
                    request.session["conversation_id"] = str(data["conversationId"])
                path = url if url.startswith("/") else "/" + url.split("/", 3)[-1]
                second = await send(
                    self._http(), lambda: self._request("GET", path), _SERVICE, self.retry,
                    key=self._key, limiter=self.rate_limiter,
                )  # fmt: skip
                try:
                    async for ev in self._read_raw(second, request):
                        yield ev
                finally:
                    await second.aclose()
                return
            text, result = self._settle(body, request)
            if text:
                yield TextDelta(text)
            yield result
            return
        async for ev in self._read_raw(response, request):
            yield ev

    async def _read_raw(
        self, response: httpx.Response, request: TurnRequest
    ) -> AsyncIterator[StreamEvent]:
        # Raw UTF-8 with no framing: a character may straddle two chunks.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = ""
        try:
            async for raw in stream_blocks(response):
                chunk = decoder.decode(raw)
                if chunk:
                    text += chunk
                    yield TextDelta(chunk)
        except httpx.TransportError as exc:
            raise stream_error(exc, _SERVICE, text) from None
        tail = decoder.decode(b"", final=True)
        if tail:
            yield TextDelta(tail)
        yield TurnResult(model=request.model)
