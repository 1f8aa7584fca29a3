"""NumPy arrays to PIL images, without guessing silently.

Arrays come in every layout and range: H×W masks, H×W×3 photos, channel-first
tensors, uint16 microscopy, float images in [0, 1] or [0, 255] or anything at
all, with NaNs from a division.  The rules below are the ones a person would
apply; an array that fits none of them is an ``ImageError`` saying why.
numpy is imported by the caller's object, never by visionchat at import time.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from .errors import ImageError

__all__ = ["array_to_pil"]

_CHANNELS = (1, 3, 4)


def array_to_pil(obj: Any) -> Image.Image:
    import numpy as np

    a = np.asarray(obj)
    desc = f"array of shape {tuple(a.shape)} and dtype {a.dtype}"
    if a.size == 0:
        raise ImageError(f"The {desc} is empty: it has no pixels.")
    a = _to_hwc(a, desc)
    a = _to_uint8(a, desc)
    channels = a.shape[2]
    if channels == 1:
        return Image.fromarray(np.ascontiguousarray(a[:, :, 0]), "L")
    if channels == 3:
        return Image.fromarray(np.ascontiguousarray(a), "RGB")
    img = Image.fromarray(np.ascontiguousarray(a), "RGBA")
    return img if int(a[:, :, 3].min()) < 255 else img.convert("RGB")


def _to_hwc(a: Any, desc: str) -> Any:
    """Return an H×W×C view with C in (1, 3, 4)."""
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim == 3:
        if a.shape[2] in _CHANNELS:
            return a
        if a.shape[0] in _CHANNELS:
            return a.transpose(1, 2, 0)  # channel-first (C×H×W), as in PyTorch
    hint = ""
    if a.ndim == 4 and a.shape[0] == 1:
        hint = " It looks like a batch of one: pass array[0]."
    elif a.ndim > 3:
        hint = " Pick one image from it, e.g. array[0]."
    raise ImageError(
        f"Cannot read an image from the {desc}: expected H×W, H×W×C or C×H×W "
        f"with C in 1, 3 or 4.{hint}"
    )


def _to_uint8(a: Any, desc: str) -> Any:
    import numpy as np

    kind = a.dtype.kind
    if kind == "b":
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if kind in "iu":
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi <= 255:
            return a.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
        return _stretch(a.astype(np.float64), lo, hi)
    if kind == "f":
        f = a.astype(np.float64)
        finite = np.isfinite(f)
        if not finite.any():
            raise ImageError(f"The {desc} has no finite values (all NaN or infinite).")
        flo, fhi = float(f[finite].min()), float(f[finite].max())
        # NaN shows as black; +inf and -inf as the brightest and darkest values.
        f = np.where(np.isnan(f), flo, f)
        f = np.clip(f, flo, fhi)
        if flo >= 0.0 and fhi <= 1.0:
            return np.rint(f * 255.0).astype(np.uint8)
        if flo >= 0.0 and fhi <= 255.0:
            return np.rint(f).astype(np.uint8)
        return _stretch(f, flo, fhi)
    raise ImageError(f"The {desc} cannot be shown as an image: use bool, integer or float pixels.")


def _stretch(f: Any, lo: float, hi: float) -> Any:
    """Map [lo, hi] onto [0, 255] (for data with no natural pixel range)."""
    import numpy as np

    if hi <= lo:
        return np.zeros(f.shape, dtype=np.uint8)
    if not np.isfinite(hi - lo):  # a range wider than float64 holds: halve everything first
        f, lo, hi = f * 0.5, lo * 0.5, hi * 0.5
    return np.rint((f - lo) * (255.0 / (hi - lo))).astype(np.uint8)
