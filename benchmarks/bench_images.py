"""prepare_image against a naive pipeline, on three typical inputs, in one process.

The baseline is what a hand-written notebook helper usually does: decode fully,
resize with LANCZOS to the same target, save as PNG.  For each input this prints
the wall-clock and CPU time of both, their ratios, the bytes of both, and the
fidelity of our output measured against the baseline's pixels (PSNR in dB; above
~35 dB a person cannot tell them apart).

Both times are printed because prepare_image spreads a large resize and the
thumbnail over a few threads while the baseline uses one.  Wall time is what a
user waits for, so the speed-up target is judged on it; CPU time (all threads
added up) shows what the speed-up costs the machine, so that nothing is hidden
by using more cores.  Each is the median of the ratios of runs timed moments
apart, with the two sides alternating, so a shared machine's drifting load falls
on both sides of a pair rather than on one of them.

    python benchmarks/bench_images.py
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from visionchat import prepare_image
from visionchat.images import DEFAULT_MAX_EDGE, DEFAULT_MAX_PIXELS, _Limits

REPEAT = 9
STAGES = ("decode", "resize", "encode")


def photo_jpeg() -> bytes:
    """A 24 MP photo-like JPEG: smooth light, texture and sensor noise."""
    w, h = 6000, 4000
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 150 + 80 * np.sin(x / 900) * np.cos(y / 700)
    texture = 25 * np.sin(x / 13 + np.sin(y / 29) * 3) * np.cos(y / 17)
    base = np.stack([light + texture, light * 0.8 + texture * 0.5, light * 0.6 - texture], -1)
    base += rng.normal(0, 6, base.shape).astype(np.float32)
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def screenshot_png() -> bytes:
    """A 4K UI-like screenshot: flat panels, borders and text-like strokes."""
    w, h = 3840, 2160
    img = Image.new("RGB", (w, h), (246, 246, 246))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, w, 80), fill=(40, 44, 52))
    d.rectangle((0, 80, 480, h), fill=(230, 232, 236))
    rng = np.random.default_rng(3)
    for row in range(120, h - 60, 36):
        x = 520
        while x < w - 200:
            word = int(rng.integers(20, 140))
            d.rectangle((x, row, x + word, row + 14), fill=(60, 60, 60))
            x += word + 14
    for i in range(12):
        d.rectangle((20, 120 + i * 60, 460, 160 + i * 60), outline=(160, 160, 170), width=2)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def plot_png() -> bytes:
    """A 4K PNG of a line plot: anti-aliased lines and text, so thousands of colours.

    The flat screenshot above keeps 211 colours after the resize and goes out as
    a palette PNG; a plot does not, so it shows the common case without that.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(19.2, 10.8), dpi=200)
    x = np.linspace(0, 10, 500)
    for k in range(4):
        ax.plot(x, np.sin(x + k) * (1 + k / 4), label=f"series {k}")
    ax.set(title="Signal by series", xlabel="time (s)", ylabel="amplitude")
    ax.legend()
    ax.grid(True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def float_array() -> np.ndarray:
    y, x = np.mgrid[0:2000, 0:2000] / 2000.0
    return (np.sin(x * 12) * np.cos(y * 9) * 0.5 + 0.5).astype(np.float64)


def naive(obj: object, stages: dict[str, float] | None = None) -> bytes:
    """The baseline; ``stages`` (if given) adds up the seconds spent in each step."""
    t0 = time.process_time()
    img = _naive_decode(obj)
    t1 = time.process_time()
    img = _naive_resize(img)
    t2 = time.process_time()
    data = _naive_encode(img)
    t3 = time.process_time()
    if stages is not None:
        for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            stages[stage] = stages.get(stage, 0.0) + seconds
    return data


def _naive_decode(obj: object) -> Image.Image:
    if isinstance(obj, np.ndarray):
        return Image.fromarray((obj * 255).round().astype(np.uint8))
    img = Image.open(io.BytesIO(obj))  # type: ignore[arg-type]
    img.load()
    return img.convert("RGB")


def _naive_resize(img: Image.Image) -> Image.Image:
    target = _Limits(DEFAULT_MAX_EDGE, DEFAULT_MAX_PIXELS).target(*img.size)
    return img.resize(target, Image.Resampling.LANCZOS)


def _naive_encode(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Timing:
    """Medians over the alternating runs: seconds per call, and the per-pair ratios."""

    ours: float
    base: float
    speedup: float  # median of base / ours, pair by pair


def timed(ours: Callable[[], bytes], base: Callable[[], bytes]) -> tuple[Timing, Timing]:
    """Wall-clock and CPU timings of ours and the baseline, run alternately.

    Each round times one call of each, in turns (ours first in even rounds,
    the baseline first in odd ones), so the two calls of a pair are moments
    apart and the speed-up of each pair is free of drift in the machine's
    load.  The caller has run each once already, so caches are warm.
    """
    wall: dict[str, list[float]] = {"ours": [], "base": []}
    cpu: dict[str, list[float]] = {"ours": [], "base": []}
    sides = [("ours", ours), ("base", base)]
    for i in range(REPEAT):
        for side, call in sides if i % 2 == 0 else sides[::-1]:
            w0, c0 = time.perf_counter(), time.process_time()
            call()
            wall[side].append(time.perf_counter() - w0)
            cpu[side].append(time.process_time() - c0)
    return _summary(wall), _summary(cpu)


def _summary(runs: dict[str, list[float]]) -> Timing:
    ratios = [b / o for o, b in zip(runs["ours"], runs["base"], strict=True)]
    return Timing(
        statistics.median(runs["ours"]), statistics.median(runs["base"]), statistics.median(ratios)
    )


def shares(stages: dict[str, float]) -> str:
    """Where the baseline's time goes, so what any pipeline must still pay is visible."""
    total = sum(stages.values())
    return ", ".join(f"{stage} {100 * s / total:.0f}%" for stage, s in stages.items())


def psnr(a: bytes, b: bytes) -> float:
    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=np.float64)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float64)
    if x.shape != y.shape:
        raise SystemExit(f"sizes differ: {x.shape} vs {y.shape}")
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    cases = [
        ("24 MP JPEG photo", photo_jpeg()),
        ("4K PNG screenshot", screenshot_png()),
        ("4K PNG plot", plot_png()),
        ("2000×2000 float array", float_array()),
    ]
    print(
        f"median of {REPEAT} runs, ours and the baseline alternating; speed-up = median of "
        "per-pair ratios;\nbaseline = full decode + LANCZOS + PNG, same process\n"
    )
    header = (
        f"{'input':22} {'wall ours':>9} {'baseline':>9} {'speed-up':>8} "
        f"{'CPU ours':>9} {'baseline':>9} {'speed-up':>8} "
        f"{'our bytes':>10} {'base bytes':>10} {'ratio':>7} {'PSNR':>7} format"
    )
    print(header)
    print("-" * len(header))
    by_stage = []
    for name, obj in cases:
        ours, base = prepare_image(obj).data, naive(obj)  # also warms caches
        stages: dict[str, float] = {}
        wall, cpu = timed(
            lambda o=obj: prepare_image(o).data,  # type: ignore[misc]
            lambda o=obj, s=stages: naive(o, s),  # type: ignore[misc]
        )
        mime = prepare_image(obj).mime.split("/")[1]
        print(
            f"{name:22} {wall.ours * 1000:7.0f}ms {wall.base * 1000:7.0f}ms {wall.speedup:7.2f}× "
            f"{cpu.ours * 1000:7.0f}ms {cpu.base * 1000:7.0f}ms {cpu.speedup:7.2f}× "
            f"{len(ours):10,} {len(base):10,} {len(ours) / len(base):6.3f}× "
            f"{psnr(ours, base):5.1f}dB {mime}"
        )
        by_stage.append(f"{name:22} {shares(stages)}")
    print("\nthe baseline's CPU time by step (decode and convert, LANCZOS resize, PNG encode):")
    print("\n".join(by_stage))


if __name__ == "__main__":
    main()
