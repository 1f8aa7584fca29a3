"""Cheap, honest measurements of an image: size, colours, brightness, kind.

The offline demo model answers from these, so a teaching demo without a key
still says true things about the picture.  Everything is measured on a small
copy: the figures describe the whole image, not its fine detail.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import cast

from PIL import Image, ImageStat

__all__ = ["ImageStats", "colour_name", "measure"]

# A small palette of everyday colour names; the nearest one (in RGB) names a colour.
_NAMED: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "dark grey": (64, 64, 64),
    "grey": (128, 128, 128),
    "light grey": (192, 192, 192),
    "white": (255, 255, 255),
    "red": (220, 30, 30),
    "dark red": (128, 0, 0),
    "orange": (255, 140, 0),
    "brown": (140, 80, 30),
    "yellow": (240, 220, 30),
    "olive": (128, 128, 0),
    "green": (40, 170, 40),
    "dark green": (0, 90, 0),
    "teal": (0, 128, 128),
    "cyan": (0, 220, 230),
    "light blue": (140, 190, 240),
    "blue": (30, 80, 220),
    "dark blue": (0, 0, 128),
    "purple": (128, 40, 160),
    "pink": (240, 130, 180),
    "magenta": (220, 0, 220),
    "beige": (230, 215, 180),
}


def colour_name(rgb: tuple[int, int, int]) -> str:
    r, g, b = rgb

    def dist(c: tuple[int, int, int]) -> int:
        # weighted toward how people perceive differences (green counts most)
        return 2 * (r - c[0]) ** 2 + 4 * (g - c[1]) ** 2 + 3 * (b - c[2]) ** 2

    return min(_NAMED, key=lambda name: dist(_NAMED[name]))


@dataclass(frozen=True)
class ImageStats:
    width: int
    height: int
    brightness: float  # mean luminance, 0 (black) .. 1 (white)
    contrast: float  # standard deviation of luminance, 0 .. ~0.5
    colours: tuple[tuple[str, str, float], ...]  # (name, #hex, share of pixels), largest first
    distinct_colours: int  # in a 64x64 copy
    top_share: float  # share of pixels taken by the 4 most common exact colours
    white_share: float  # share of near-white pixels
    transparent: bool
    kind: str  # "chart or diagram", "screenshot or flat graphic", "photograph"

    @property
    def orientation(self) -> str:
        if self.width > self.height * 1.1:
            return "landscape"
        if self.height > self.width * 1.1:
            return "portrait"
        return "square"

    @property
    def brightness_word(self) -> str:
        b = self.brightness
        return (
            "very dark"
            if b < 0.2
            else "dark"
            if b < 0.4
            else "medium"
            if b < 0.6
            else ("bright" if b < 0.8 else "very bright")
        )


def measure(data: bytes) -> ImageStats:
    """Measure encoded image bytes (PNG, JPEG, WebP)."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.draft("RGB", (256, 256))  # JPEG: decode at reduced size, cheaply
        width, height = opened.size
        img = opened.copy()
    transparent = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    if transparent:
        rgba = img.convert("RGBA")
        alpha = rgba.getchannel("A")
        low = cast("tuple[int, int]", alpha.getextrema())[0]
        transparent = low < 255
        base = Image.new("RGB", rgba.size, (255, 255, 255))
        base.paste(rgba, mask=alpha)
        rgb = base
    else:
        rgb = img.convert("RGB")
    rgb.thumbnail((128, 128), Image.Resampling.BILINEAR)
    # Original size from the header, not the draft-decoded one.
    lum = rgb.convert("L")
    stat = ImageStat.Stat(lum)
    brightness = stat.mean[0] / 255.0
    contrast = stat.stddev[0] / 255.0

    small = rgb.resize((64, 64), Image.Resampling.NEAREST)
    counts = cast(
        "list[tuple[int, tuple[int, int, int]]]",
        sorted(small.getcolors(64 * 64) or [], reverse=True),
    )
    total = 64 * 64
    distinct = len(counts)
    top_share = sum(c for c, _ in counts[:4]) / total
    white_share = sum(c for c, px in counts if min(px) >= 235) / total

    quant = rgb.quantize(colors=6, method=Image.Quantize.MEDIANCUT)
    palette = quant.getpalette() or []
    shares: dict[str, tuple[str, float]] = {}
    qcounts = cast("list[tuple[int, int]]", sorted(quant.getcolors(6) or [], reverse=True))
    qtotal = sum(c for c, _ in qcounts) or 1
    for count, index in qcounts:
        px = (palette[3 * index], palette[3 * index + 1], palette[3 * index + 2])
        name = colour_name(px)
        hexcode = "#{:02x}{:02x}{:02x}".format(*px)
        prev = shares.get(name)
        share = count / qtotal + (prev[1] if prev else 0.0)
        shares[name] = (prev[0] if prev else hexcode, share)
    colours = tuple(sorted(((n, h, s) for n, (h, s) in shares.items()), key=lambda t: -t[2]))

    if top_share > 0.6 and distinct < 400:
        kind = "chart or diagram" if white_share > 0.35 else "screenshot or flat graphic"
    else:
        kind = "photograph"
    return ImageStats(
        width=width,
        height=height,
        brightness=brightness,
        contrast=contrast,
        colours=colours,
        distinct_colours=distinct,
        top_share=top_share,
        white_share=white_share,
        transparent=transparent,
        kind=kind,
    )
