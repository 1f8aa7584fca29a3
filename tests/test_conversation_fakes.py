"""Test doubles for the conversation tests: a scriptable provider and tiny images.

The fake provider honours the Provider contract (uploads cached by sha256,
upload progress, text deltas, a final TurnResult, session state for
server-side history) and lets a test pace the stream: a delay per chunk, a
gate to hold it, or a failure after N chunks.  End-to-end tests use the real
providers and the emulator; these exist so the conversation's own logic can be
tested precisely and fast.  This module has no tests of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
from collections.abc import AsyncIterator
from dataclasses import replace

from PIL import Image

from visionchat.images import PreparedImage
from visionchat.providers.base import (
    ModelInfo,
    StreamEvent,
    TextDelta,
    TurnRequest,
    TurnResult,
    UploadProgress,
    Usage,
)


def make_image(
    color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)
) -> PreparedImage:
    """A real PNG-encoded PreparedImage of one colour."""
    img = Image.new("RGB", size, color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    thumb = img.copy()
    thumb.thumbnail((32, 32))
    tbuf = io.BytesIO()
    thumb.save(tbuf, format="PNG")
    return PreparedImage(
        data=data,
        mime="image/png",
        width=size[0],
        height=size[1],
        sha256=hashlib.sha256(data).hexdigest(),
        thumbnail=tbuf.getvalue(),
        thumbnail_mime="image/png",
        source=f"PIL RGB {size[0]}x{size[1]}",
        original_size=size,
        original_format=None,
        resized=False,
    )


class FakeProvider:
    """A provider whose answers and pacing the test controls.

    The answer to a prompt is ``"echo <prompt> | images=<n> | w1 w2 ..."`` split
    into word chunks, so a test can check which prompt and how many images
    reached the backend.
    """

    def __init__(
        self,
        *,
        name: str = "fake",
        keeps_history: bool = False,
        words: int = 8,
        delay: float = 0.0,
        context_tokens: int | None = 128_000,
        vision: bool = True,
        max_image_edge: int | None = 2048,
    ) -> None:
        self.name = name
        self.keeps_history = keeps_history
        self.words = words
        self.delay = delay
        self.context_tokens = context_tokens
        self.vision = vision
        self.max_image_edge = max_image_edge
        self.requests: list[TurnRequest] = []
        self.uploaded: list[str] = []  # sha256 of every image actually uploaded
        self._refs: dict[str, str] = {}
        self.gate: threading.Event | None = None  # when set: hold after the first chunk
        self.fail_after: int | None = None
        self.fail_with: Exception | None = None
        self.closed = False
        self.stream_threads: set[str] = set()
        self.conversations = 0

    def model_info(self, model: str) -> ModelInfo | None:
        return ModelInfo(
            id=model,
            name=model,
            vendor="openai",
            vision=self.vision and model != "text-only",
            context_tokens=self.context_tokens,
            input_price=2.0,
            output_price=8.0,
            max_image_edge=self.max_image_edge,
        )

    async def list_models(self) -> list[ModelInfo]:
        infos = [self.model_info(m) for m in ("gpt-4o", "text-only", "claude-x")]
        return [i for i in infos if i is not None]

    async def upload(self, image: PreparedImage) -> str:
        if image.sha256 not in self._refs:
            await asyncio.sleep(0)
            self.uploaded.append(image.sha256)
            self._refs[image.sha256] = f"ref-{image.sha256[:12]}"
        return self._refs[image.sha256]

    def answer_for(self, request: TurnRequest) -> list[str]:
        head = f"echo {request.prompt} | images={len(request.images)} |"
        return [head] + [f" w{i}" for i in range(1, self.words + 1)]

    async def stream(self, request: TurnRequest) -> AsyncIterator[StreamEvent]:
        self.stream_threads.add(threading.current_thread().name)
        self.requests.append(replace(request, session=dict(request.session)))
        for i, image in enumerate(request.images):
            await self.upload(image)
            yield UploadProgress(i + 1, len(request.images))
        if self.keeps_history and "conversation_id" not in request.session:
            self.conversations += 1
            request.session["conversation_id"] = f"conv-{self.conversations}"
        sent = ""
        for i, chunk in enumerate(self.answer_for(request)):
            if self.fail_after is not None and i == self.fail_after and self.fail_with is not None:
                exc = self.fail_with
                if hasattr(exc, "partial_text"):
                    exc.partial_text = sent
                raise exc
            if i == 1 and self.gate is not None:
                while not self.gate.is_set():
                    await asyncio.sleep(0.005)
            if self.delay:
                await asyncio.sleep(self.delay)
            sent += chunk
            yield TextDelta(chunk)
        yield TurnResult(
            model=request.model,
            credits=12.5,
            usage=Usage(input_tokens=len(request.prompt), output_tokens=len(sent)),
            record_id=f"rec-{len(self.requests)}",
        )

    async def aclose(self) -> None:
        self.closed = True
