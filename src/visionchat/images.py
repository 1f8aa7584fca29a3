"""Turn anything image-like in a kernel into bytes worth sending.

(Skeleton: the PreparedImage type is fixed; prepare_image is being built.)
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from .errors import ImageError

__all__ = ["ImageError", "PreparedImage", "prepare_image"]

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


@dataclass(frozen=True, eq=False, repr=False)
class PreparedImage:
    """An image encoded and ready to upload, plus what happened on the way."""

    data: bytes
    mime: str  # "image/png", "image/jpeg" or "image/webp"
    width: int
    height: int
    sha256: str  # hex digest of ``data``
    thumbnail: bytes  # PNG or JPEG, long edge <= 256 px, for previews
    thumbnail_mime: str
    source: str  # short human description of the input ("PIL RGBA 640x480", "file cat.jpg")
    original_size: tuple[int, int]
    original_format: str | None
    resized: bool

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self.mime]

    @property
    def filename(self) -> str:
        """Upload name; 1min.ai rejects uploads whose name lacks an extension."""
        return f"img-{self.sha256[:16]}.{self.extension}"

    def to_data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PreparedImage) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)


def prepare_image(obj: Any, *, max_edge: int | None = None) -> PreparedImage:
    raise ImageError("prepare_image is not built yet")
