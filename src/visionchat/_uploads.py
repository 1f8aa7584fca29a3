"""Files from the page, arriving in parts, put back together.

The page sends a file from the computer in parts because the Jupyter server
closes a websocket on a message over 10 MiB, which would lose the file (and the
page's connection) without a word. Parts of one upload arrive in order on the
widget's comm; a part missing or repeated means the file is refused, never
attached garbled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .errors import ImageError, VisionChatError

UPLOAD_PART_BYTES = 2 * 1024 * 1024  # the page's part size (js/widget.ts says the same)
MAX_UPLOAD_BYTES = 256 * 1024 * 1024
# An upload whose page went away mid-way is dropped once nothing arrived for this long.
STALE_SECONDS = 300.0


class Uploads:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, tuple[float, list[bytes]]] = {}

    def __len__(self) -> int:
        return len(self._open)

    def receive(self, upload: str, name: str, part: int, parts: int, chunk: bytes) -> bytes | None:
        """The whole file when its last part arrives; None while parts are missing."""
        if parts * UPLOAD_PART_BYTES > MAX_UPLOAD_BYTES + UPLOAD_PART_BYTES:
            raise ImageError(
                f"{name} is too large to attach from the page (over "
                f"{MAX_UPLOAD_BYTES // 2**20} MB). Pass it from Python instead: "
                "visionchat.chat('path/to/file') or conv.ask(..., 'path/to/file')."
            )
        if parts <= 1:
            return chunk
        now = self._clock()
        with self._lock:
            for key, (seen, _) in list(self._open.items()):
                if now - seen > STALE_SECONDS:
                    del self._open[key]
            _, got = self._open.pop(upload, (now, []))
            if part != len(got):
                raise VisionChatError(
                    f"{name} did not arrive whole (part {part + 1} of {parts} came out of "
                    "order); attach it again."
                )
            got.append(chunk)
            if len(got) < parts:
                self._open[upload] = (now, got)
                return None
        return b"".join(got)
