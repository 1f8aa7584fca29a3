"""Turn anything image-like in a kernel into bytes worth sending.

Vision models downscale what they receive (OpenAI fits 2048 px, Anthropic about
1568 px or 1.15 MP), so sending more costs upload time and money for nothing.
``prepare_image`` therefore shrinks to the target's limit before encoding,
decodes big JPEGs at reduced scale (Pillow's draft mode) instead of fully, and
picks the encoding by content: PNG keeps plots and screenshots crisp and small,
JPEG keeps photographs small.  A large image is resized on a few threads, in
bands that make exactly the pixels of one resize, and its thumbnail is made
while it is encoded, so the output never depends on the threads.  Every
failure is an ``ImageError`` naming the input and the problem.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import itertools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

__all__ = ["DEFAULT_MAX_EDGE", "DEFAULT_MAX_PIXELS", "ImageError", "PreparedImage", "prepare_image"]

DEFAULT_MAX_EDGE = 2048
DEFAULT_MAX_PIXELS = 2048 * 2048
THUMBNAIL_EDGE = 256
JPEG_QUALITY = 85
# Chroma at half resolution across, full resolution down.  A downscaled photo
# packs its colour detail tight, and the usual 4:2:0 (half both ways) loses it:
# on a 24 MP photo sent at 2048 px, 4:2:0 at quality 85 is 39.4 dB from a
# full-quality resize, 4:2:2 is 41.2 dB for 24% more bytes, 4:4:4 is 41.9 dB
# for 64% more; raising the quality under 4:2:0 costs more bytes per dB.
JPEG_SUBSAMPLING = "4:2:2"
# Bicubic rather than LANCZOS: two lobes instead of three, so 0.6x the time on
# a 4K screenshot (where resizing was half the work), 42.6 dB from a LANCZOS
# resize there, and on a draft-decoded photo closer to a full-size LANCZOS
# resize than LANCZOS itself (50.2 vs 50.1 dB).  CLIP-style vision encoders
# resample bicubically too.
RESAMPLE = Image.Resampling.BICUBIC
# Pillow first shrinks by a whole factor (box average) when it keeps at least
# this many times the target size, which only happens above 6x.
REDUCING_GAP = 3.0
URL_TIMEOUT = 20.0  # seconds, connect and between bytes
MAX_DOWNLOAD_BYTES = 50_000_000

# Resizes from at least this many pixels are split into bands resized on
# several threads; below it the hand-over costs more than it saves.
_BAND_MIN_PIXELS = 2_000_000
# A prepared image this large has its thumbnail made while it is encoded.
_OVERLAP_MIN_PIXELS = 1_000_000
# Off makes every step run in the calling thread; the output is the same.
_THREADED = True

_FULL_SIZE = "visionchat-full-size"  # img.info key: size before draft decoding
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
_ACCEPTED = (
    "a PIL image, a NumPy array, a matplotlib Figure or Axes, a path, bytes, a binary "
    "file object, an http(s) URL, an IPython Image, or an object with _repr_png_/_repr_jpeg_"
)


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
    source: str  # short human description of the input ("PIL RGBA 640×480", "file cat.jpg")
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

    def to_pil(self) -> Image.Image:
        """Decode the prepared bytes (what the model will see).

        A palette PNG (how few-colour screenshots are sent) comes back as RGB,
        the mode it was prepared from, so its pixels are colours, not indices.
        """
        img = Image.open(io.BytesIO(self.data))
        img.load()
        return img.convert("RGB") if img.mode == "P" else img

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PreparedImage) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        size = f"{self.width}×{self.height}"
        was = ", resized from {}×{}".format(*self.original_size) if self.resized else ""
        return (
            f"PreparedImage({size} {self.mime}, {_human_bytes(len(self.data))}{was}; "
            f"from {self.source})"
        )

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        # Notebooks render PNG and JPEG; a WebP shows through its thumbnail.
        if self.mime in ("image/png", "image/jpeg"):
            mime, data = self.mime, self.data
        else:
            mime, data = self.thumbnail_mime, self.thumbnail
        bundle = {mime: base64.b64encode(data).decode("ascii"), "text/plain": repr(self)}
        return bundle, {mime: {"width": self.width, "height": self.height}}


def prepare_image(
    obj: Any,
    *,
    max_edge: int | None = None,
    max_pixels: int | None = None,
    max_short_edge: int | None = None,
    format: str | None = None,
    quality: int = JPEG_QUALITY,
    timeout: float = URL_TIMEOUT,
    max_download_bytes: int = MAX_DOWNLOAD_BYTES,
) -> PreparedImage:
    """Convert ``obj`` into an encoded image no larger than the limits.

    ``max_edge`` (default 2048) bounds the long edge, ``max_pixels`` (default
    2048²) the area and ``max_short_edge`` (default none) the short edge, as
    models' services do (OpenAI keeps at most 768 px on the short side); images
    are never upscaled.  ``format`` forces "png", "jpeg" or "webp"; by default
    the content decides.  URLs are fetched with ``timeout`` seconds per step and
    at most ``max_download_bytes``.
    """
    limits = _Limits.of(max_edge, max_pixels, max_short_edge)
    chosen = None
    if format is not None:
        chosen = _FORMATS.get(format.lower().lstrip("."))
        if chosen is None:
            raise ImageError(f"format must be 'png', 'jpeg' or 'webp', not {format!r}")
    img, source, original_format = _load(obj, limits, timeout, max_download_bytes)
    return _finish(img, source, original_format, limits, chosen, quality)


def fits(
    width: int,
    height: int,
    *,
    max_edge: int | None = None,
    max_pixels: int | None = None,
    max_short_edge: int | None = None,
) -> bool:
    """Whether an image of this size is within the limits (``prepare_image`` would keep it).

    What ``prepare_image`` makes for some limits always fits them, so an image
    prepared for a model is never re-encoded (and re-uploaded) for it.
    """
    return _Limits.of(max_edge, max_pixels, max_short_edge).fits(width, height)


@dataclass(frozen=True)
class _Limits:
    max_edge: int
    max_pixels: int
    max_short: int | None = None

    @classmethod
    def of(cls, max_edge: int | None, max_pixels: int | None, max_short: int | None) -> _Limits:
        """The limits as the public calls take them: None (or 0) for the defaults."""
        limits = cls(max_edge or DEFAULT_MAX_EDGE, max_pixels or DEFAULT_MAX_PIXELS, max_short)
        if min(limits.max_edge, limits.max_pixels, 1 if max_short is None else max_short) < 1:
            raise ImageError("max_edge, max_pixels and max_short_edge must be positive")
        return limits

    def fits(self, width: int, height: int) -> bool:
        return (
            max(width, height) <= self.max_edge
            and width * height <= self.max_pixels
            and (self.max_short is None or min(width, height) <= self.max_short)
        )

    def target(self, width: int, height: int) -> tuple[int, int]:
        """The size to scale to: within every limit, aspect kept, never larger."""
        if self.fits(width, height):
            return width, height
        scale = min(
            self.max_edge / max(width, height),
            math.sqrt(self.max_pixels / (width * height)),
            self.max_short / min(width, height) if self.max_short else 1.0,
        )
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        while not self.fits(w, h) and (w > 1 or h > 1):  # rounding went a pixel over
            if w >= h:
                w -= 1
            else:
                h -= 1
        return w, h


# -- loading: every input kind becomes a PIL image ---------------------------


def _load(
    obj: Any, limits: _Limits, timeout: float, max_bytes: int
) -> tuple[Image.Image, str, str | None]:
    if isinstance(obj, PreparedImage):
        return _open_bytes(obj.data, obj.source, limits)
    if isinstance(obj, Image.Image):
        size = "{}×{}".format(*obj.size)
        return _from_pil(obj, f"PIL {obj.mode} {size}"), f"PIL {obj.mode} {size}", obj.format
    if _is_ndarray(obj):
        from ._image_arrays import array_to_pil

        return array_to_pil(obj), f"array {obj.dtype} {tuple(obj.shape)}", None
    figure = _as_figure(obj)
    if figure is not None:
        return _open_bytes(_render_figure(figure), "matplotlib figure", limits)
    if isinstance(obj, str) and obj.lower().startswith(("http://", "https://")):
        data = _fetch(obj, timeout, max_bytes)
        return _open_bytes(data, f"URL {_short(obj)}", limits)
    if isinstance(obj, str | os.PathLike):
        return _open_path(Path(os.fsdecode(obj)).expanduser(), limits)
    if isinstance(obj, bytes | bytearray | memoryview):
        data = bytes(obj)
        return _open_bytes(data, f"bytes ({_human_bytes(len(data))})", limits)
    if hasattr(obj, "read"):
        return _open_file(obj, limits)
    shown = _repr_bytes(obj, timeout, max_bytes)
    if shown is not None:
        return _open_bytes(shown, type(obj).__name__, limits)
    raise ImageError(
        f"Cannot use a {type(obj).__module__}.{type(obj).__qualname__} as an image; "
        f"pass {_ACCEPTED}."
    )


def _is_ndarray(obj: Any) -> bool:
    t = type(obj)
    return (t.__module__ == "numpy" and t.__name__ == "ndarray") or (
        hasattr(obj, "__array_interface__") and hasattr(obj, "dtype") and hasattr(obj, "shape")
    )


def _as_figure(obj: Any) -> Any:
    module = type(obj).__module__
    if not module.startswith("matplotlib"):
        return None
    if hasattr(obj, "savefig") and hasattr(obj, "canvas"):
        return obj
    fig = getattr(obj, "figure", None)  # an Axes (or any artist) on a figure
    if fig is not None and hasattr(fig, "savefig"):
        return fig
    return None


def _render_figure(fig: Any) -> bytes:
    """Render as the notebook shows it, leaving the user's figure untouched.

    ``savefig`` restores the figure's dpi and colours afterwards; it does not
    close the figure, so the user can keep drawing on it.
    """
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi="figure", bbox_inches="tight")
    except Exception as exc:
        raise ImageError(f"The matplotlib figure could not be drawn: {exc}") from exc
    return buf.getvalue()


def _open_path(path: Path, limits: _Limits) -> tuple[Image.Image, str, str | None]:
    source = f"file {path.name or path}"
    if not path.exists():
        raise ImageError(f"No file at {str(path)!r}: check the path (relative to {Path.cwd()}).")
    if path.is_dir():
        raise ImageError(f"{str(path)!r} is a folder, not an image file.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"Cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    return _open_bytes(data, source, limits)


def _open_file(obj: Any, limits: _Limits) -> tuple[Image.Image, str, str | None]:
    name = getattr(obj, "name", None)
    source = f"file object {Path(name).name}" if isinstance(name, str) else "file object"
    try:
        data = obj.read()
    except Exception as exc:
        raise ImageError(f"Cannot read from {source}: {exc}") from exc
    if isinstance(data, str):
        raise ImageError(f"{source} is open in text mode; open it with 'rb'.")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageError(f"{source}.read() returned {type(data).__name__}, not bytes.")
    return _open_bytes(bytes(data), source, limits)


def _repr_bytes(obj: Any, timeout: float, max_bytes: int) -> bytes | None:
    """Bytes from an IPython ``Image`` or any object with a PNG/JPEG repr."""
    data = getattr(obj, "data", None)
    if type(obj).__name__ == "Image" and isinstance(data, bytes) and data:
        return data
    url = getattr(obj, "url", None)
    if type(obj).__name__ == "Image" and isinstance(url, str) and url.startswith("http"):
        return _fetch(url, timeout, max_bytes)
    for name in ("_repr_png_", "_repr_jpeg_"):
        method = getattr(obj, name, None)
        if not callable(method):
            continue
        try:
            out = method()
        except Exception as exc:
            raise ImageError(f"{type(obj).__name__}.{name}() failed: {exc}") from exc
        if isinstance(out, tuple):
            out = out[0]
        if isinstance(out, str):
            try:
                out = base64.b64decode(out, validate=True)
            except ValueError:
                out = None
        if isinstance(out, bytes) and out:
            return out
    return None


def _fetch(url: str, timeout: float, max_bytes: int) -> bytes:
    import httpx

    source = f"URL {_short(url)}"
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code >= 400:
                raise ImageError(f"{source} answered HTTP {response.status_code}; check the URL.")
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind and not kind.startswith("image/") and kind != "application/octet-stream":
                raise ImageError(f"{source} is not an image (its content type is {kind}).")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ImageError(
                    f"{source} is {_human_bytes(int(declared))}, more than the "
                    f"{_human_bytes(max_bytes)} limit; download and shrink it first."
                )
            chunks, total = [], 0
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise ImageError(
                        f"{source} is larger than the {_human_bytes(max_bytes)} limit; "
                        "download and shrink it first."
                    )
                chunks.append(chunk)
    except httpx.TimeoutException as exc:
        raise ImageError(f"{source} did not answer within {timeout:g} s; try again.") from exc
    except httpx.HTTPError as exc:
        raise ImageError(f"{source} could not be fetched: {exc}") from exc
    return b"".join(chunks)


def _open_bytes(data: bytes, source: str, limits: _Limits) -> tuple[Image.Image, str, str | None]:
    if not data:
        raise ImageError(f"{source} is empty: there is no image in it.")
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format
        turned = _transposed(img)
        full = (img.height, img.width) if turned else img.size
        if fmt == "JPEG":
            # Decode at the smallest scale (1/2, 1/4, 1/8) still above the target:
            # a 24 MP photo bound for 2048 px never decodes at full size.
            tw, th = limits.target(*full)
            if (tw, th) != full:
                img.draft(None, (th, tw) if turned else (tw, th))
        img.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{source} is too large to decode safely ({exc}); it may be a "
            "decompression bomb. Shrink it with another tool first if you trust it."
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{source} is not an image Pillow can read (PNG, JPEG, WebP, GIF, TIFF, BMP...)."
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{source} is corrupt or truncated: {exc}") from exc
    out = _from_pil(img, source)
    out.info[_FULL_SIZE] = full
    return out, source, fmt


def _transposed(img: Image.Image) -> bool:
    return _orientation(img) in (5, 6, 7, 8)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag, 1 (as stored) when absent or unreadable."""
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:
        return 1


def _from_pil(img: Image.Image, source: str) -> Image.Image:
    """First frame, EXIF orientation applied, in a mode we can encode."""
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        w, h = img.size
        if w == 0 or h == 0:
            raise ImageError(f"{source} has no pixels ({w}×{h}).")
        if _orientation(img) != 1:  # exif_transpose copies even an upright image
            img = ImageOps.exif_transpose(img) or img
        return _normalize_mode(img)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"{source} could not be converted: {exc}") from exc


def _normalize_mode(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("RGB", "L"):
        return img
    if mode == "RGBA":
        return img if _has_alpha(img) else img.convert("RGB")
    if mode == "LA":
        return img if _has_alpha(img) else img.convert("L")
    if mode == "1":
        return img.convert("L")
    if mode in ("P", "PA"):
        rgba = img.convert("RGBA")
        return rgba if _has_alpha(rgba) else rgba.convert("RGB")
    if mode.startswith("I;16"):
        return img.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    if mode in ("I", "F"):
        return _scale_to_8bit(img)
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX...


def _scale_to_8bit(img: Image.Image) -> Image.Image:
    extrema = cast("tuple[float, float]", img.getextrema())
    lo, hi = float(extrema[0]), float(extrema[1])
    if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
        scale, offset = 255.0, 0.0
    elif lo >= 0.0 and hi <= 255.0:
        scale, offset = 1.0, 0.0
    elif img.mode == "I" and lo >= 0.0 and hi <= 65535.0:
        scale, offset = 1 / 257, 0.0
    elif hi > lo:
        scale, offset = 255.0 / (hi - lo), -lo * 255.0 / (hi - lo)
    else:
        scale, offset = 0.0, 0.0
    return img.point(lambda v: v * scale + offset).convert("L")


def _has_alpha(img: Image.Image) -> bool:
    extrema = cast("tuple[int, int]", img.getchannel("A").getextrema())
    return extrema[0] < 255


# -- shrinking and encoding -----------------------------------------------------


def _finish(
    img: Image.Image,
    source: str,
    original_format: str | None,
    limits: _Limits,
    mime: str | None,
    quality: int,
) -> PreparedImage:
    original_size = _original_size(img)
    target = limits.target(*original_size)
    resized = target != original_size
    if img.size != target:
        img = _resize(img, target)
    mime = mime or _choose_mime(img)
    # The thumbnail only reads the prepared image, so on a big one it is made
    # while the main encode runs; both release the GIL.
    pool = _executor() if img.width * img.height >= _OVERLAP_MIN_PIXELS else None
    pending = pool.submit(_thumbnail, img, mime) if pool is not None else None
    data = _encode(img, mime, quality, exact_palette=True)
    thumb, thumb_mime = pending.result() if pending is not None else _thumbnail(img, mime)
    return PreparedImage(
        data=data,
        mime=mime,
        width=img.width,
        height=img.height,
        sha256=hashlib.sha256(data).hexdigest(),
        thumbnail=thumb,
        thumbnail_mime=thumb_mime,
        source=source,
        original_size=original_size,
        original_format=original_format,
        resized=resized,
    )


def _thumbnail(img: Image.Image, mime: str) -> tuple[bytes, str]:
    # Straight from the prepared image: thumbnail() would first copy all of it.
    size = _Limits(THUMBNAIL_EDGE, THUMBNAIL_EDGE**2).target(*img.size)
    thumb = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    thumb_mime = "image/jpeg" if mime == "image/jpeg" else "image/png"
    return _encode(thumb, thumb_mime, 80), thumb_mime


def _original_size(img: Image.Image) -> tuple[int, int]:
    """The size before draft decoding: a JPEG decoded at 1/4 scale still reports it."""
    full = img.info.get(_FULL_SIZE)
    return (int(full[0]), int(full[1])) if full else img.size


def _choose_mime(img: Image.Image) -> str:
    """PNG for graphics, JPEG for photographs.

    Plots, line art and screenshots are mostly a few exact colours (the
    background, the lines, the text), which PNG stores losslessly and small;
    JPEG would blur their edges.  Photographs have no dominant exact colours and
    PNG would be many times larger.  Transparency needs PNG.  The test looks at a
    64×64 nearest-neighbour sample, so it costs microseconds.
    """
    if img.mode in ("RGBA", "LA"):
        return "image/png"
    sample = img.resize((64, 64), Image.Resampling.NEAREST)
    colours = sample.getcolors(64 * 64) or []
    top = sum(sorted((c for c, _ in colours), reverse=True)[:8])
    return "image/png" if top >= 0.5 * 64 * 64 else "image/jpeg"


def _encode(img: Image.Image, mime: str, quality: int, *, exact_palette: bool = False) -> bytes:
    buf = io.BytesIO()
    if mime == "image/jpeg":
        img = img.convert("L" if img.mode in ("L", "LA") else "RGB")
        img.save(buf, format="JPEG", quality=quality, subsampling=JPEG_SUBSAMPLING, optimize=True)
    elif mime == "image/webp":
        img.save(buf, format="WEBP", quality=quality, method=4)
    else:
        # A screenshot or plot often keeps at most 256 colours even after the
        # resize (a 4K screenshot at 2048 px: 211), and as a palette PNG it is
        # the same pixels in about half the bytes and a quarter of the encode
        # time (67 kB in 15 ms against 125 kB in 60 ms).  Level 6: level 3 is
        # faster still but 30% larger, and bytes are paid again whenever an
        # OpenAI-compatible server is sent the earlier turns.
        palette = _exact_palette(img) if exact_palette else None
        (palette or img).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _exact_palette(img: Image.Image) -> Image.Image | None:
    """The same pixels as a palette image, when an RGB image has at most 256 colours.

    Pillow's quantizers are either slower than the RGB encode they would save
    (median cut, maximum coverage) or not exact (fast octree, and converting to
    a given palette, which looks colours up at 6 bits a channel).  A lookup
    table indexed by the 24-bit colour is exact and, with the colour count,
    takes about 12 ms at 2048×1152, against the 45 ms the smaller encode saves;
    but it needs NumPy, which visionchat does not require: without it the image
    stays RGB, as before.  The palette is sorted by colour, so the bytes do not
    depend on the order in which Pillow happens to count the colours.
    """
    if img.mode != "RGB":  # L is one byte a pixel already; alpha stays lossless as it is
        return None
    np = _numpy()
    # getcolors gives up as soon as a 257th colour turns up.
    colours = cast("list[tuple[int, tuple[int, int, int]]] | None", img.getcolors(256))
    if np is None or colours is None:
        return None
    rgb = sorted(colour for _, colour in colours)
    keys = np.array([r | g << 8 | b << 16 for r, g, b in rgb], dtype=np.uint32)
    lut = np.zeros(1 << 24, dtype=np.uint8)  # calloc: only the pages written are touched
    lut[keys] = np.arange(len(rgb), dtype=np.uint8)
    # Little-endian words R | G << 8 | B << 16 | pad << 24, whatever the machine's order.
    pixels = np.frombuffer(img.tobytes("raw", "RGBX"), dtype="<u4") & 0xFFFFFF
    out = Image.frombytes("P", img.size, lut[pixels].tobytes())
    out.putpalette(bytes(c for colour in rgb for c in colour))
    return out


@functools.cache
def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


# -- resizing on several threads --------------------------------------------------


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``img.resize(size, RESAMPLE, reducing_gap=REDUCING_GAP)``, on several threads.

    Resizing is the biggest step on a large screenshot, and Pillow releases the
    GIL while it resamples.  Pillow resizes in two passes, across and then
    down; a large image is cut into vertical bands, one per thread, and each
    thread runs both passes on its band, as calls of their own.  Across, a
    band is resampled from its own box of the source, with the same weights as
    the whole image where ``_bands`` can prove it; down, every column is
    resampled alike, so a band is exactly its columns of the whole.  One pass
    per call matters: Pillow 13 picks the order of the passes from the box,
    so a narrow band resized in one call could go down first and round
    differently.  Pillow 13 also goes down first for some tall images, so
    those (taller than wide) keep the one call.  Threads or not, the result is
    the same bytes.
    """
    (width, height), (w, h) = img.size, size
    if (
        img.mode not in ("RGB", "L")  # RGBA and LA go through a premultiplied copy
        or width * height < _BAND_MIN_PIXELS
        or int(width / w / REDUCING_GAP) > 1  # Pillow would first reduce by a whole factor
        or int(height / h / REDUCING_GAP) > 1
        or height > width  # Pillow 13 may resample a tall image down first
    ):
        return img.resize(size, RESAMPLE, reducing_gap=REDUCING_GAP)
    bands = _bands(width, w, _cpus())
    pool = _executor() if bands else None
    if pool is None or not bands:
        return img.resize(size, RESAMPLE, reducing_gap=REDUCING_GAP)
    pending = [pool.submit(_two_passes, img, band.across, (band.width, h)) for band in bands[1:]]
    parts = [_two_passes(img, bands[0].across, (bands[0].width, h))]
    parts += [future.result() for future in pending]
    out = Image.new(img.mode, size)
    for band, part in zip(bands, parts, strict=True):
        out.paste(part, (band.start, 0))
    return out


def _two_passes(
    img: Image.Image, across: tuple[float, float], size: tuple[int, int]
) -> Image.Image:
    """The source columns ``across`` resampled to ``size``: across first, then down."""
    if size[0] != img.width or across != (0.0, img.width):
        img = img.resize((size[0], img.height), RESAMPLE, (across[0], 0, across[1], img.height))
    return img.resize(size, RESAMPLE) if size[1] != img.height else img


@dataclass(frozen=True)
class _Band:
    across: tuple[float, float]  # source columns, as Pillow's box takes them
    start: int  # output columns [start, start + width)
    width: int


def _bands(length: int, out: int, count: int) -> list[_Band] | None:
    """Output columns cut so that each band's weights are the whole image's; else None.

    Pillow computes the weights of output column ``j`` from the centre
    ``box_start + (j + 0.5) * scale``, in doubles, the box arriving as C
    floats.  A band starting at output column ``k`` has ``box_start = k *
    scale``, so its weights equal the whole image's when that arithmetic is
    exact: the scale (source / output width) must be a fraction with a
    power-of-two denominator, and every box edge must fit a float's 24 bits.
    Shrinking the long edge to 2048 px always gives such a scale (3840 / 2048
    is 15/8).
    """
    scale = Fraction(length, out)
    if count < 2 or out >= length or out < 2 * count or scale.denominator & (scale.denominator - 1):
        return None
    cuts = [round(i * out / count) for i in range(count + 1)]
    widths = [b - a for a, b in itertools.pairwise(cuts)]
    if any((scale * n).numerator.bit_length() > 24 for n in cuts + widths):
        return None
    return [
        _Band((float(scale * a), float(scale * b)), a, b - a) for a, b in itertools.pairwise(cuts)
    ]


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _cpus() -> int:
    """CPUs this process may run on (a container's share, not the host's count)."""
    try:
        return min(4, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return min(4, os.cpu_count() or 1)


def _executor() -> ThreadPoolExecutor | None:
    """The shared image threads, started on first use; None where they cannot help."""
    global _pool
    if not _THREADED or _cpus() < 2:
        return None
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_cpus(), thread_name_prefix="visionchat-image")
        return _pool


def _forget_pool_after_fork() -> None:
    """A forked child has none of the parent's threads: start afresh on next use."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _human_bytes(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    if n < 1_000_000:
        return f"{n / 1000:.1f} kB"
    return f"{n / 1_000_000:.1f} MB"


def _short(url: str) -> str:
    return url if len(url) <= 80 else url[:77] + "..."
