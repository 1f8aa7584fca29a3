"""prepare_image over every input kind, with real encoded images."""

from __future__ import annotations

import http.server
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import visionchat
from visionchat import ImageError, PreparedImage, prepare_image

matplotlib.use("Agg")
import contextlib

import matplotlib.pyplot as plt

# -- helpers -------------------------------------------------------------------


def encoded(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def decoded(p: PreparedImage) -> Image.Image:
    assert p.sha256 == __import__("hashlib").sha256(p.data).hexdigest()
    img = Image.open(io.BytesIO(p.data))
    img.load()
    assert img.size == (p.width, p.height)
    assert Image.MIME[img.format] == p.mime
    return img


def pixels(p: PreparedImage) -> Image.Image:
    """The decoded pixels, a palette PNG's indices looked up: what a viewer shows."""
    img = decoded(p)
    return img.convert("RGB") if img.mode == "P" else img


def photo_like(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack(
        [
            128 + 100 * np.sin(x / 37.0) * np.cos(y / 53.0),
            x / w * 255,
            y / h * 255,
        ],
        axis=-1,
    ) + rng.normal(0, 18, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def quadrants(w: int = 80, h: int = 60) -> Image.Image:
    """Four distinct colours, so any rotation or flip is visible pixel by pixel."""
    img = Image.new("RGB", (w, h))
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    for i, c in enumerate(colours):
        x0, y0 = (i % 2) * w // 2, (i // 2) * h // 2
        img.paste(c, (x0, y0, x0 + w // 2, y0 + h // 2))
    return img


# -- PIL images ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_pil_mode(mode: str) -> None:
    img = Image.new("RGB", (64, 40), (200, 100, 50)).convert(mode)
    p = prepare_image(img)
    out = decoded(p)
    assert (p.width, p.height) == (64, 40)
    assert out.mode in ("L", "LA", "P", "RGB", "RGBA")
    assert p.source.startswith(f"PIL {mode}")


def test_sixteen_bit_keeps_its_brightness() -> None:
    img = Image.new("I;16", (8, 8))
    img.putdata([65535 // 2] * 64)
    out = decoded(prepare_image(img)).convert("L")
    assert abs(out.getpixel((0, 0)) - 127) <= 1


def test_palette_transparency_is_kept() -> None:
    img = Image.new("P", (20, 20), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (10, 0, 20, 20))
    img.info["transparency"] = 1
    p = prepare_image(img)
    out = decoded(p)
    assert p.mime == "image/png" and out.mode == "RGBA"
    assert out.getpixel((15, 5))[3] == 0 and out.getpixel((2, 5))[3] == 255


def test_opaque_alpha_is_dropped() -> None:
    out = pixels(prepare_image(Image.new("RGBA", (10, 10), (1, 2, 3, 255))))
    assert out.mode == "RGB"


def test_first_frame_of_an_animation() -> None:
    frames = [Image.new("RGB", (30, 30), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = decoded(prepare_image(buf.getvalue())).convert("RGB")
    assert out.getpixel((15, 15))[0] > 200 and out.getpixel((15, 15))[2] < 50


# transpose needed to undo each EXIF orientation (see the EXIF spec)
_UNDO = {
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_270],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_90],
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_pixel_by_pixel(orientation: int) -> None:
    upright = quadrants()
    stored = upright
    # Store the pixels the way a camera would for this orientation: the inverse
    # of what a viewer applies.
    inverse = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    if orientation in inverse:
        stored = upright.transpose(inverse[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(stored, "JPEG", quality=95, exif=exif.tobytes())
    p = prepare_image(data, format="png")
    out = decoded(p).convert("RGB")
    assert out.size == upright.size
    for x, y in [(10, 10), (70, 10), (10, 50), (70, 50)]:
        got, want = out.getpixel((x, y)), upright.getpixel((x, y))
        assert all(abs(g - w) < 40 for g, w in zip(got, want, strict=True)), (x, y, got, want)


# -- arrays ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "mode"),
    [
        ((40, 50), "L"),
        ((40, 50, 1), "L"),
        ((40, 50, 3), "RGB"),
        ((40, 50, 4), "RGBA"),
        ((1, 40, 50), "L"),
        ((3, 40, 50), "RGB"),
        ((4, 40, 50), "RGBA"),
    ],
)
def test_array_layouts(shape: tuple[int, ...], mode: str) -> None:
    a = np.full(shape, 0.5, dtype=np.float32)
    if mode == "RGBA":
        a[..., 0, 0] = 0.2 if shape[0] == 4 else a[..., 0, 0]
        if shape[-1] == 4:
            a[0, 0, 3] = 0.2
        else:
            a[3, 0, 0] = 0.2
    p = prepare_image(a)
    assert (p.width, p.height) == (50, 40)
    assert pixels(p).mode == mode


@pytest.mark.parametrize(
    ("values", "dtype", "expected"),
    [
        ([0.0, 1.0], np.float32, (0, 255)),
        ([0.0, 0.5], np.float16, (0, 128)),
        ([0.0, 200.0], np.float64, (0, 200)),
        ([-1.0, 1.0], np.float64, (0, 255)),
        ([0, 65535], np.uint16, (0, 255)),
        ([0, 255], np.uint8, (0, 255)),
        ([0, 100], np.int64, (0, 100)),
        ([-5, 5], np.int32, (0, 255)),
        ([False, True], np.bool_, (0, 255)),
    ],
)
def test_array_ranges(values: list[float], dtype: type, expected: tuple[int, int]) -> None:
    a = np.array([values * 8] * 16, dtype=dtype)
    out = np.asarray(decoded(prepare_image(a, format="png")).convert("L"))
    assert (int(out.min()), int(out.max())) == expected


def test_extreme_float_range_is_stretched_without_overflow() -> None:
    import warnings

    a = np.array([[-1.7e308, 0.0, 1.7e308]] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-cast warnings
        out = np.asarray(decoded(prepare_image(a, format="png")))
    assert list(out[0]) == [0, 128, 255]


def test_nan_and_inf_are_handled() -> None:
    a = np.linspace(0, 1, 100, dtype=np.float64).reshape(10, 10)
    a[0, 0], a[0, 1], a[0, 2] = np.nan, np.inf, -np.inf
    out = np.asarray(decoded(prepare_image(a, format="png")))
    assert out[0, 1] == 255 and out[0, 0] == out[0, 2]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((0, 10)), "empty"),
        (np.zeros((10, 10, 2)), "expected H×W"),
        (np.zeros((1, 10, 10, 3)), "batch of one"),
        (np.full((5, 5), np.nan), "no finite values"),
        (np.zeros((5, 5), dtype=complex), "bool, integer or float"),
    ],
)
def test_bad_arrays(array: np.ndarray, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        prepare_image(array)


_dtypes = st.sampled_from(
    [
        np.uint8,
        np.uint16,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.float16,
        np.float32,
        np.float64,
        np.bool_,
    ]
)
_shapes = st.one_of(
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
    st.tuples(st.integers(1, 24), st.integers(1, 24), st.sampled_from([1, 2, 3, 4, 5])),
    st.tuples(st.sampled_from([1, 3, 4, 7]), st.integers(5, 24), st.integers(5, 24)),
    hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=6),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dtype=_dtypes, shape=_shapes)
def test_any_array_gives_an_image_or_an_image_error(
    data: st.DataObject, dtype: type, shape: tuple[int, ...]
) -> None:
    a = data.draw(hnp.arrays(dtype, shape))
    try:
        p = prepare_image(a)
    except ImageError:
        return
    img = decoded(p)
    h, w = (shape[1], shape[2]) if len(shape) == 3 and shape[2] not in (1, 3, 4) else shape[:2]
    assert img.size == (w, h)


# -- matplotlib ----------------------------------------------------------------------


def test_figure_and_axes_leave_the_figure_as_it_was() -> None:
    fig, ax = plt.subplots(figsize=(5, 3), dpi=90)
    ax.plot([0, 1, 2], [2, 0, 1])
    before = (tuple(fig.get_size_inches()), fig.dpi, len(fig.axes), fig.get_facecolor())
    p1 = prepare_image(fig)
    p2 = prepare_image(ax)
    after = (tuple(fig.get_size_inches()), fig.dpi, len(fig.axes), fig.get_facecolor())
    assert before == after
    assert plt.fignum_exists(fig.number)
    assert p1.mime == "image/png" and p1 == p2
    assert p1.source == "matplotlib figure"
    plt.close(fig)


# -- files, bytes, streams, reprs ----------------------------------------------------


def test_paths_bytes_and_file_objects(tmp_path: Path) -> None:
    data = encoded(photo_like(300, 200), "JPEG", quality=90)
    f = tmp_path / "cat.jpg"
    f.write_bytes(data)
    results = [
        prepare_image(str(f)),
        prepare_image(f),
        prepare_image(data),
        prepare_image(bytearray(data)),
        prepare_image(memoryview(data)),
        prepare_image(io.BytesIO(data)),
    ]
    with f.open("rb") as fh:
        results.append(prepare_image(fh))
    assert len({r.sha256 for r in results}) == 1
    assert results[0].source == "file cat.jpg" and results[0].original_format == "JPEG"


def test_matplotlib_sample_data_file() -> None:
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        p = prepare_image(fh)
    assert p.original_format == "JPEG" and p.mime == "image/jpeg"


def test_ipython_image_and_repr_objects() -> None:
    from IPython.display import Image as IPyImage

    png = encoded(Image.new("RGB", (12, 9), (0, 128, 0)), "PNG")
    assert prepare_image(IPyImage(data=png)).width == 12

    class Plot:
        def _repr_png_(self) -> bytes:
            return png

    assert prepare_image(Plot()).height == 9


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.png", "No file at"),
        (lambda tmp: tmp, "is a folder"),
        (lambda tmp: b"", "empty"),
        (lambda tmp: b"hello, not an image at all", "not an image Pillow can read"),
        (lambda tmp: encoded(photo_like(200, 200), "PNG")[:500], "corrupt or truncated"),
        (lambda tmp: io.StringIO("text"), "text mode"),
        (lambda tmp: 42, "Cannot use a builtins.int"),
        (lambda tmp: {"a": 1}, "pass a PIL image"),
    ],
)
def test_bad_inputs_raise_image_errors(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImageError, match=message):
        prepare_image(make(tmp_path))


def test_decompression_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encoded(Image.new("L", (400, 400)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 160,000 px > 2 × limit
    with pytest.raises(ImageError, match="decompression bomb"):
        prepare_image(data)


def test_image_error_is_a_value_error_and_a_visionchat_error() -> None:
    with pytest.raises(ValueError):
        prepare_image(object())
    with pytest.raises(visionchat.VisionChatError):
        prepare_image(object())


# -- size, encoding, thumbnails ------------------------------------------------------


def test_downscale_to_limits_never_upscale() -> None:
    big = Image.new("RGB", (4000, 1000), (9, 9, 9))
    p = prepare_image(big)
    assert (p.width, p.height) == (2048, 512) and p.resized and p.original_size == (4000, 1000)
    p = prepare_image(big, max_edge=1000)
    assert (p.width, p.height) == (1000, 250)
    p = prepare_image(big, max_pixels=1_000_000)
    assert p.width * p.height <= 1_000_000 and abs(p.width / p.height - 4) < 0.02
    small = prepare_image(Image.new("RGB", (30, 20)), max_edge=4000)
    assert (small.width, small.height) == (30, 20) and not small.resized


def test_large_jpeg_is_draft_decoded_but_reports_its_real_size() -> None:
    data = encoded(photo_like(3000, 2000), "JPEG", quality=90)
    p = prepare_image(data, max_edge=500)
    assert (p.width, p.height) == (500, 333) and p.original_size == (3000, 2000)


def test_encoding_follows_content() -> None:
    fig, ax = plt.subplots()
    ax.plot([1, 3, 2])
    assert prepare_image(fig).mime == "image/png"
    plt.close(fig)
    assert prepare_image(photo_like(400, 300)).mime == "image/jpeg"
    assert prepare_image(Image.new("RGBA", (50, 50), (0, 0, 0, 10))).mime == "image/png"
    assert prepare_image(photo_like(100, 100), format="webp").mime == "image/webp"
    with pytest.raises(ImageError, match="format must be"):
        prepare_image(photo_like(10, 10), format="gif")


def screenshot_like(w: int, h: int) -> Image.Image:
    """Flat panels and text-like strokes: what a screenshot of an app looks like."""
    from PIL import ImageDraw

    img = Image.new("RGB", (w, h), (246, 246, 246))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, w, 30), fill=(40, 44, 52))
    for row in range(50, h - 20, 18):
        for x in range(20, w - 60, 70):
            draw.rectangle((x, row, x + 50, row + 7), fill=(60, 60, 60))
    return img


@pytest.mark.parametrize("max_edge", [None, 640])
def test_png_of_a_screenshot_is_the_prepared_pixels_exactly(max_edge: int | None) -> None:
    img = screenshot_like(1200, 700)
    p = prepare_image(img, max_edge=max_edge)
    assert p.mime == "image/png" and p.resized == (max_edge is not None)
    expected = img.resize((p.width, p.height), visionchat.images.RESAMPLE, reducing_gap=3.0)
    assert np.array_equal(np.asarray(pixels(p)), np.asarray(expected))


def test_a_screenshot_with_few_colours_is_an_exact_palette_png() -> None:
    img = screenshot_like(1200, 700)
    p = prepare_image(img, max_edge=640)
    expected = img.resize((p.width, p.height), visionchat.images.RESAMPLE, reducing_gap=3.0)
    assert expected.getcolors(256) is not None  # the resize kept at most 256 colours
    out = decoded(p)
    assert out.mode == "P"
    assert np.array_equal(np.asarray(out.convert("RGB")), np.asarray(expected))
    assert len(p.data) < len(encoded(expected, "PNG", compress_level=6))
    # to_pil gives colours, not palette indices
    back = p.to_pil()
    assert back.mode == "RGB" and np.array_equal(np.asarray(back), np.asarray(expected))


@pytest.mark.parametrize("count", [1, 2, 16, 255, 256])
def test_palette_is_exact_for_close_colours(count: int) -> None:
    # Neighbours one level apart in one channel: a lookup at reduced precision
    # (Pillow's convert to a palette looks up 6 bits a channel) would merge them.
    rng = np.random.default_rng(count)
    colours = np.array([(i, 255 - i, (i * 7) % 256) for i in range(count)], np.uint8)
    pixels = colours[rng.integers(0, count, (37, 53))]
    p = prepare_image(Image.fromarray(pixels), format="png")
    out = decoded(p)
    assert out.mode == "P"
    assert np.array_equal(np.asarray(out.convert("RGB")), pixels)


def test_more_than_256_colours_stay_an_rgb_png_as_before() -> None:
    img = photo_like(300, 200)
    p = prepare_image(img, format="png")
    assert decoded(p).mode == "RGB"
    assert p.data == encoded(img, "PNG", compress_level=6)
    assert prepare_image(photo_like(400, 300)).mime == "image/jpeg"


def test_without_numpy_a_screenshot_stays_an_rgb_png(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(visionchat.images, "_numpy", lambda: None)
    img = screenshot_like(1200, 700)
    p = prepare_image(img, max_edge=640)
    expected = img.resize((p.width, p.height), visionchat.images.RESAMPLE, reducing_gap=3.0)
    out = decoded(p)
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(expected))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_stays_exact(mode: str) -> None:
    img = screenshot_like(1200, 700).convert(mode)
    img.paste((0, 0) if mode == "LA" else (0, 0, 0, 0), (0, 0, 300, 200))  # clear corner
    p = prepare_image(img, max_edge=640)
    out = decoded(p)
    expected = img.resize((p.width, p.height), visionchat.images.RESAMPLE, reducing_gap=3.0)
    assert out.mode == mode and np.array_equal(np.asarray(out), np.asarray(expected))
    assert out.getpixel((0, 0))[-1] == 0


def noise(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Random pixels: any difference between two resizes shows somewhere."""
    rng = np.random.default_rng(seed)
    shape = (h, w) if mode == "L" else (h, w, 3)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))


@pytest.mark.parametrize("cpus", [2, 3, 4])
@pytest.mark.parametrize(
    ("size", "mode", "cut"),
    [
        ((3840, 2160), "RGB", True),  # 4K screenshot: 3840/2048 = 15/8
        ((3000, 2000), "RGB", True),  # a 24 MP JPEG decoded at 1/2: 375/256
        ((2880, 1800), "L", True),
        ((4097, 1537), "RGB", True),  # odd sizes
        ((3001, 2100), "RGB", True),
        ((5000, 1200), "RGB", True),  # extreme aspect
        ((2500, 2500), "RGB", True),
        ((2000, 1500), "RGB", False),  # to 1.7 MP: 2000/1505 is not exact
        ((2499, 2500), "RGB", None),  # taller than wide: one call
        ((1200, 5000), "RGB", None),
        ((20000, 150), "RGB", None),  # Pillow would first reduce 3x: one call
        ((1200, 900), "RGB", None),  # too small to be worth threads
    ],
)
def test_a_banded_resize_is_the_one_call_resize_exactly(
    monkeypatch: pytest.MonkeyPatch,
    cpus: int,
    size: tuple[int, int],
    mode: str,
    cut: bool | None,
) -> None:
    images = visionchat.images
    monkeypatch.setattr(images, "_cpus", lambda: cpus)
    banded: list[bool] = []
    bands = images._bands

    def spy(*args: int) -> object:
        found = bands(*args)
        banded.append(found is not None)
        return found

    monkeypatch.setattr(images, "_bands", spy)
    img = noise(*size, mode=mode)
    target = images._Limits(2048, 2048 * 2048).target(*size)
    if target == size:
        target = images._Limits(2048, 1_700_000).target(*size)
    one = img.resize(target, images.RESAMPLE, reducing_gap=3.0)
    assert images._resize(img, target).tobytes() == one.tobytes()
    assert banded == ([] if cut is None else [cut])


def test_a_draft_decoded_jpeg_is_resized_in_bands_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    images = visionchat.images
    monkeypatch.setattr(images, "_cpus", lambda: 2)
    data = encoded(photo_like(4000, 3000), "JPEG", quality=90)
    limits = images._Limits(1024, 1024 * 1024)
    img, _, _ = images._open_bytes(data, "test", limits)
    assert img.size == (2000, 1500)  # decoded at half scale
    target = limits.target(4000, 3000)
    assert images._bands(2000, target[0], 2) is not None  # 2000/1024 = 125/64
    one = img.resize(target, images.RESAMPLE, reducing_gap=3.0)
    assert images._resize(img, target).tobytes() == one.tobytes()


@pytest.mark.parametrize("kind", ["screenshot", "photo", "small"])
def test_threads_do_not_change_a_byte(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setattr(visionchat.images, "_cpus", lambda: 2)  # threads even on one CPU
    source: object = {
        "screenshot": lambda: encoded(screenshot_like(3840, 2160), "PNG"),
        "photo": lambda: encoded(photo_like(4000, 3000), "JPEG", quality=90),
        "small": lambda: screenshot_like(300, 200),
    }[kind]()
    threaded = prepare_image(source, max_edge=1024 if kind == "photo" else None)
    monkeypatch.setattr(visionchat.images, "_THREADED", False)
    alone = prepare_image(source, max_edge=1024 if kind == "photo" else None)
    assert threaded.data == alone.data and threaded.thumbnail == alone.thumbnail
    assert threaded.resized == (kind != "small")


def test_jpeg_keeps_colour_detail_down_the_image() -> None:
    # Rows alternate red and blue.  Chroma at half height (JPEG's usual 4:2:0)
    # would blend each pair into one purple; full height keeps both colours.
    rows = np.zeros((240, 320, 3), np.uint8)
    odd = np.arange(240) % 2 == 1
    rows[~odd], rows[odd] = (200, 40, 40), (40, 40, 200)
    p = prepare_image(Image.fromarray(rows), format="jpeg")
    out = np.asarray(decoded(p).convert("RGB"), dtype=np.float64)
    assert np.abs(out - rows).mean() < 5  # 4:2:0 gives 58


def test_thumbnail_and_reprs() -> None:
    p = prepare_image(photo_like(1200, 600))
    thumb = Image.open(io.BytesIO(p.thumbnail))
    assert max(thumb.size) == 256 and Image.MIME[thumb.format] == p.thumbnail_mime
    bundle, meta = p._repr_mimebundle_()
    assert "image/jpeg" in bundle and meta["image/jpeg"]["width"] == p.width
    assert "1200×600" in repr(p) or "resized" not in repr(p)
    assert p.filename.startswith("img-") and p.filename.endswith(".jpg")
    assert p.to_data_url().startswith("data:image/jpeg;base64,")


# -- URLs (a real server on loopback) -------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    png = encoded(Image.new("RGB", (33, 22), (10, 20, 30)), "PNG")

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/img.png":
            self._send(200, "image/png", self.png)
        elif self.path == "/page":
            self._send(200, "text/html", b"<html>not an image</html>")
        elif self.path == "/huge":
            self._send(200, "image/png", b"\0" * 300_000)
        elif self.path == "/slow":
            time.sleep(2)
            self._send(200, "image/png", self.png)
        else:
            self._send(404, "text/plain", b"nope")

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_url(server: str) -> None:
    p = prepare_image(f"{server}/img.png")
    assert (p.width, p.height) == (33, 22) and p.source.startswith("URL http://127.0.0.1")


@pytest.mark.parametrize(
    ("path", "kw", "message"),
    [
        ("/page", {}, "not an image"),
        ("/missing", {}, "HTTP 404"),
        ("/huge", {"max_download_bytes": 100_000}, "limit"),
        ("/slow", {"timeout": 0.3}, "did not answer"),
    ],
)
def test_bad_urls(server: str, path: str, kw: dict[str, float], message: str) -> None:
    with pytest.raises(ImageError, match=message):
        prepare_image(f"{server}{path}", **kw)  # type: ignore[arg-type]


def test_unreachable_url() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ImageError, match="could not be fetched"):
        prepare_image(f"http://127.0.0.1:{port}/x.png", timeout=2)


def test_short_edge_and_pixel_limits_as_services_apply_them() -> None:
    wide = Image.new("RGB", (2048, 1024), (10, 120, 200))
    # OpenAI (high detail) keeps at most 768 px on the short side
    openai = prepare_image(wide, max_short_edge=768)
    assert (openai.width, openai.height) == (1536, 768)
    # Anthropic keeps about 1.15 megapixels
    anthropic = prepare_image(wide, max_edge=1568, max_pixels=1_150_000)
    assert anthropic.width * anthropic.height <= 1_150_000 * 1.001
    assert anthropic.width / anthropic.height == pytest.approx(2, rel=0.01)
    with pytest.raises(ImageError, match="must be positive"):
        prepare_image(wide, max_short_edge=0)


@given(
    w=st.integers(1, 5000),
    h=st.integers(1, 5000),
    edge=st.integers(16, 4096),
    pixels=st.integers(256, 20_000_000),
    short=st.one_of(st.none(), st.integers(16, 2048)),
)
def test_what_prepare_image_makes_for_some_limits_always_fits_them(
    w: int, h: int, edge: int, pixels: int, short: int | None
) -> None:
    # so an image prepared for a model is never re-encoded (and re-uploaded) for it
    from visionchat.images import _Limits, fits

    limits = {"max_edge": edge, "max_pixels": pixels, "max_short_edge": short}
    tw, th = _Limits(edge, pixels, short).target(w, h)
    assert fits(tw, th, **limits)
    assert fits(w, h, **limits) == ((tw, th) == (w, h))
