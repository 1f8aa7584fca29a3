"""What the offline model measures in images: colours, kinds, and a chart's contents.

Real images only: matplotlib figures drawn here, matplotlib's own sample photo,
NumPy noise, and PIL drawings.  Expected positions in charts come from the data
and matplotlib's default 5% margins, not from earlier runs.
"""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from visionchat._image_stats import ImageStats, Mark, colour_name, measure
from visionchat.images import prepare_image

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import cbook
from matplotlib.figure import Figure


def png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def chart(fig: Figure) -> ImageStats:
    """A figure as the conversation sends it (prepare_image), measured in full."""
    data = prepare_image(fig).data
    plt.close(fig)
    return measure(data, marks=True)


def marks(stats: ImageStats) -> list[Mark]:
    assert stats.marks is not None
    return list(stats.marks)


def sales_figure(labelled: bool = False) -> Figure:
    """The chart-iteration demo's figure: a rising series with one outlier at index 12."""
    rng = np.random.default_rng(42)
    years = np.arange(2000, 2021)
    sales = 50 + 3 * (years - 2000) + rng.normal(0, 4, years.size)
    sales[12] += 30
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(years, sales)
    if labelled:
        ax.set_xlabel("year")
        ax.set_ylabel("sales (k units)")
        ax.set_title("Sales per year")
    return fig


def plot_x(i: float, n: int) -> float:
    """Where data index ``i`` of ``0..n-1`` sits across the plot (5% margins each side)."""
    return (i + 0.05 * (n - 1)) / (1.1 * (n - 1))


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((220, 20, 20), "red"),
        ((31, 119, 180), "blue"),  # matplotlib's first colour
        ((255, 127, 14), "orange"),
        ((44, 160, 44), "green"),
        ((148, 103, 189), "purple"),
        ((240, 230, 30), "yellow"),
        ((0, 0, 255), "blue"),
        ((0, 255, 0), "green"),
        ((255, 255, 255), "white"),
        ((0, 0, 0), "black"),
        ((128, 128, 128), "grey"),
        ((213, 211, 208), "light grey"),  # an anti-aliased edge, not beige
        ((15, 20, 50), "navy"),
        ((135, 190, 240), "light blue"),
    ],
)
def test_colour_names(rgb: tuple[int, int, int], name: str) -> None:
    assert colour_name(rgb) == name


def test_a_solid_image_is_measured_exactly() -> None:
    s = measure(png(Image.new("RGB", (200, 100), (220, 20, 20))))
    assert (s.width, s.height, s.orientation) == (200, 100, "landscape")
    assert s.colours[0][:2] == ("red", "#dc1414") and s.colours[0][2] == pytest.approx(1.0)
    assert s.kind == "screenshot or flat graphic" and s.background == "red"
    assert s.marks is None  # only measured when asked for


def test_a_big_jpeg_reports_its_own_size_not_the_reduced_decode() -> None:
    # JPEGs are decoded at reduced scale for speed; the size reported is the file's
    noise = np.random.default_rng(3).integers(0, 255, (2048, 2048, 3), dtype=np.uint8)
    s = measure(png(Image.fromarray(noise), "JPEG"))
    assert (s.width, s.height) == (2048, 2048)


def test_brightness_contrast_and_transparency() -> None:
    dark, light = Image.new("RGB", (50, 50), (10, 10, 10)), Image.new("RGB", (50, 50), "white")
    assert measure(png(dark)).brightness_word == "very dark"
    assert measure(png(light)).brightness == pytest.approx(1.0)
    half = Image.new("L", (100, 100), 0)
    ImageDraw.Draw(half).rectangle((50, 0, 99, 99), fill=255)
    assert measure(png(half)).contrast == pytest.approx(0.5, abs=0.02)
    clear = Image.new("RGBA", (40, 40), (0, 0, 255, 0))
    clear.paste((0, 0, 255, 255), (0, 0, 20, 40))
    s = measure(png(clear))
    assert s.transparent and {c[0] for c in s.colours} >= {"blue", "white"}


def test_a_real_photograph_and_noise_are_photographs() -> None:
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = measure(f.read())
    assert hopper.kind == "photograph" and (hopper.width, hopper.height) == (512, 600)
    assert hopper.orientation == "portrait" and hopper.marks is None
    noise = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    assert measure(png(Image.fromarray(noise), "JPEG")).kind == "photograph"


def test_a_text_page_is_not_a_chart() -> None:
    page = Image.new("RGB", (800, 600), "white")
    draw = ImageDraw.Draw(page)
    for i in range(20):
        draw.text(
            (20, 20 + 25 * i), f"Line {i} of a page of plain text, no axes here.", fill="black"
        )
    s = measure(png(page), marks=True)
    assert s.kind == "diagram, document or screenshot" and s.lines == (0, 0) and s.marks == ()


def test_a_line_plot_is_a_chart_with_its_line_colours() -> None:
    fig, ax = plt.subplots()
    x = np.linspace(0, 10, 100)
    ax.plot(x, np.sin(x))
    ax.plot(x, np.cos(x))
    s = chart(fig)
    assert s.kind == "chart or diagram" and s.plot_box is not None
    assert [(m.colour, m.hex, m.shape) for m in marks(s)] == [
        ("blue", "#1f77b4", "line"),
        ("orange", "#ff7f0e", "line"),
    ] or [(m.colour, m.hex, m.shape) for m in marks(s)] == [
        ("orange", "#ff7f0e", "line"),
        ("blue", "#1f77b4", "line"),
    ]
    sine = next(m for m in marks(s) if m.colour == "blue")
    cosine = next(m for m in marks(s) if m.colour == "orange")
    # sin(0)=0 .. sin(10)=-0.54 and cos(0)=1 .. cos(10)=-0.84, over a range of about 2.2
    assert sine.rise == pytest.approx(-0.54 / 2.2, abs=0.05)
    assert cosine.rise == pytest.approx(-1.84 / 2.2, abs=0.05)
    assert cosine.peak == pytest.approx(plot_x(0, 100), abs=0.02)
    assert sine.jump is None and sine.spike is None and cosine.spike is None


def test_a_dark_themed_plot_is_a_chart_too() -> None:
    with plt.style.context("dark_background"):
        fig, ax = plt.subplots()
        ax.plot([1, 3, 2, 5])
    s = chart(fig)
    assert s.kind == "chart or diagram" and s.background == "black"
    assert [m.shape for m in marks(s)] == ["line"] and marks(s)[0].rise > 0.8


def test_a_lone_spike_is_found_where_the_data_puts_it() -> None:
    (line,) = marks(chart(sales_figure()))
    assert line.spike is not None and line.spike[1] > 0.15  # up, well above the trend
    assert line.spike[0] == pytest.approx(plot_x(12, 21), abs=0.02)
    assert line.rise > 0.5 and line.peak == pytest.approx(plot_x(12, 21), abs=0.02)


def test_a_sudden_step_is_found_despite_a_legend() -> None:
    x = np.linspace(0, 10, 200)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, np.sin(x), label="sin")
    ax.plot(x, np.sin(x) + np.where(x > 7, 0.8, 0), label="sin + step")
    ax.legend()
    step = next(m for m in marks(chart(fig)) if m.colour == "orange")
    assert step.jump is not None and step.jump[1] > 0
    assert step.jump[0] == pytest.approx((7 + 0.5) / 11, abs=0.02)


def test_a_smooth_line_has_no_spike_or_jump() -> None:
    fig, ax = plt.subplots()
    rng = np.random.default_rng(3)
    ax.plot(np.cumsum(rng.normal(size=300)))  # a random walk: wiggly, but nothing alone
    ax.grid(True)
    (line,) = marks(chart(fig))
    assert line.shape == "line" and line.spike is None and line.jump is None


def test_bars_points_and_areas() -> None:
    fig, ax = plt.subplots()
    ax.bar(range(5), [3, 1, 4, 1, 5])
    assert [(m.shape, m.bars) for m in marks(chart(fig))] == [("bars", 5)]
    fig, ax = plt.subplots()
    ax.barh(range(4), [3, 1, 4, 1], color="tab:green")
    assert [(m.colour, m.shape, m.bars) for m in marks(chart(fig))] == [
        ("green", "horizontal bars", 4)
    ]
    fig, ax = plt.subplots()
    rng = np.random.default_rng(0)
    ax.scatter(rng.normal(size=200), rng.normal(size=200), color="tab:red")
    assert [(m.colour, m.shape) for m in marks(chart(fig))] == [("red", "points")]
    fig, ax = plt.subplots()
    ax.plot(np.linspace(0, 1, 50), np.linspace(0, 1, 50) ** 2, "--")  # dashes are a line
    assert [m.shape for m in marks(chart(fig))] == ["line"]
    fig, ax = plt.subplots()
    ax.imshow(rng.random((20, 20)))
    s = chart(fig)
    assert s.kind == "chart or diagram" and {m.shape for m in marks(s)} == {"area"}


@pytest.mark.parametrize("dpi", [72, 100, 200])
def test_title_and_axis_labels_are_found_as_bands_of_text(dpi: int) -> None:
    found = []
    for add in ("", "x", "y", "t", "xyt"):
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=dpi)
        ax.plot(np.arange(2000, 2021), np.arange(21) ** 1.5)
        if "x" in add:
            ax.set_xlabel("year")
        if "y" in add:
            ax.set_ylabel("sales (k units)")
        if "t" in add:
            ax.set_title("Sales per year")
        found.append(chart(fig).labels)
    assert found == [
        (False, False, False),
        (False, True, False),
        (False, False, True),
        (True, False, False),
        (True, True, True),
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    mode=st.sampled_from(["RGB", "L", "RGBA", "LA", "P", "1"]),
    fmt=st.sampled_from(["PNG", "JPEG", "WEBP"]),
    shapes=st.lists(
        st.tuples(
            st.integers(0, 300), st.integers(0, 300), st.integers(0, 300), st.integers(0, 300)
        ),
        max_size=12,
    ),
    seed=st.integers(0, 2**16),
)
def test_any_image_can_be_measured(
    width: int,
    height: int,
    mode: str,
    fmt: str,
    shapes: list[tuple[int, int, int, int]],
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    for x0, y0, x1, y1 in shapes:
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.line((x0, y0, x1, y1), fill=colour, width=2)
        draw.rectangle((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), outline=colour)
    img = img.quantize(16) if mode == "P" else img.convert(mode)
    if fmt != "PNG" and img.mode not in ("RGB", "L"):
        fmt = "PNG"
    s = measure(png(img, fmt), marks=True)
    assert (s.width, s.height) == (width, height)
    assert 0 <= s.brightness <= 1 and s.colours and sum(c[2] for c in s.colours) == pytest.approx(1)
    assert s.marks is not None
