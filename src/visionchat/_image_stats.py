"""Cheap, honest measurements of an image: size, colours, brightness, kind, marks.

The offline demo model answers from these (and the emulator describes the
images it received with them), so a teaching demo without a key still says
true things about the picture.  Everything is measured on small copies, with
Pillow alone (numpy is not a run-time dependency): the figures describe the
whole image, not its fine detail.

Beyond colours and brightness, a chart can be read a little: long thin straight
lines (axes, frames) mark the plot area, and the vivid colours inside it are
traced column by column, which is enough to tell a line from bars or points,
say where a line rises or falls, and point at a sudden jump or a lone spike.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median
from typing import cast

from PIL import Image, ImageChops, ImageStat

__all__ = ["ImageStats", "Mark", "colour_name", "measure"]

RGB = tuple[int, int, int]

# -- naming colours ------------------------------------------------------------

# Everyday colour names with one or more reference colours each; the nearest
# reference in CIELAB (where distances follow perception) names a colour.
_GREYS: dict[str, tuple[RGB, ...]] = {
    "black": ((0, 0, 0),),
    "dark grey": ((64, 64, 64),),
    "grey": ((128, 128, 128),),
    "light grey": ((192, 192, 192),),
    "white": ((255, 255, 255),),
}
_HUES: dict[str, tuple[RGB, ...]] = {
    "red": ((220, 30, 30), (255, 0, 0)),
    "dark red": ((128, 0, 0),),
    "orange": ((255, 140, 0), (255, 127, 14), (210, 120, 60)),
    "gold": ((230, 180, 40), (255, 215, 0)),
    "brown": ((140, 80, 30), (140, 86, 75)),
    "yellow": ((240, 220, 30), (255, 255, 0)),
    "olive": ((128, 128, 0), (188, 189, 34)),
    "green": ((40, 170, 40), (0, 255, 0), (0, 128, 0)),
    "dark green": ((0, 90, 0),),
    "light green": ((144, 238, 144),),
    "teal": ((0, 128, 128),),
    "cyan": ((0, 210, 220), (23, 190, 207)),
    "light blue": ((140, 190, 240),),
    "blue": ((30, 80, 220), (31, 119, 180), (0, 0, 255)),
    "dark blue": ((0, 0, 128),),
    "navy": ((20, 25, 60),),
    "purple": ((128, 40, 160), (148, 103, 189), (148, 0, 211)),
    "pink": ((240, 130, 180), (227, 119, 194)),
    "magenta": ((220, 0, 220),),
    "beige": ((230, 215, 180),),
    "salmon": ((250, 128, 114),),
}
_GREY_CHROMA = 8.0  # below this CIELAB chroma a colour is a grey


def _linear(c: int) -> float:
    v = c / 255.0
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def _lab(rgb: RGB) -> tuple[float, float, float]:
    """sRGB (D65) to CIELAB."""
    r, g, b = (_linear(c) for c in rgb)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def _refs(table: dict[str, tuple[RGB, ...]]) -> list[tuple[str, tuple[float, float, float]]]:
    return [(name, _lab(rgb)) for name, rgbs in table.items() for rgb in rgbs]


_GREY_REFS = _refs(_GREYS)
_ALL_REFS = _GREY_REFS + _refs(_HUES)


def colour_name(rgb: tuple[int, int, int]) -> str:
    """The everyday name of a colour: "blue", "light grey", "orange", ..."""
    lab = _lab(rgb)
    refs = _GREY_REFS if math.hypot(lab[1], lab[2]) < _GREY_CHROMA else _ALL_REFS
    return min(refs, key=lambda ref: math.dist(ref[1], lab))[0]


def _hex(rgb: Sequence[float]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(max(0, min(255, round(c))) for c in rgb[:3]))


# -- results -------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """One vivid colour inside a chart's plot area, and what shape it draws.

    Positions are fractions of the plot area: ``x`` 0 at the left, 1 at the
    right; heights are fractions of the plot area's height.
    """

    colour: str  # "blue"
    hex: str  # "#1f77b4"
    share: float  # of the plot area's pixels
    shape: str  # "line", "bars", "horizontal bars", "points" or "area"
    span: tuple[float, float]  # leftmost and rightmost x
    bars: int = 0  # separate bars (shape "bars")
    rise: float = 0.0  # line: end height minus start height (positive = ends higher)
    peak: float | None = None  # line: x of its highest point
    trough: float | None = None  # line: x of its lowest point
    jump: tuple[float, float] | None = None  # line: (x, signed height) of a sudden step
    spike: tuple[float, float] | None = None  # line: (x, signed height) of a lone departure


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
    kind: str  # "chart or diagram", "diagram, document or screenshot",
    #            "screenshot or flat graphic", "photograph"
    background: str = ""  # name of the most common colour
    ink: float = 0.0  # share of pixels clearly lighter or darker than the background
    lines: tuple[int, int] = (0, 0)  # long thin straight lines: (horizontal, vertical)
    plot_box: tuple[float, float, float, float] | None = None  # framed area, as fractions
    vivid: tuple[tuple[str, str, float], ...] = ()  # saturated colours, even small ones
    # For a chart: is there text above the plot (a title), a second band of text
    # under the x tick labels (an x label), left of the y tick labels (a y label)?
    labels: tuple[bool, bool, bool] | None = None
    marks: tuple[Mark, ...] | None = None  # only when measured with ``marks=True``

    @property
    def orientation(self) -> str:
        if self.width > self.height * 1.1:
            return "landscape"
        if self.height > self.width * 1.1:
            return "portrait"
        return "square"

    @property
    def is_chart(self) -> bool:
        return self.kind == "chart or diagram"

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


# -- measuring -----------------------------------------------------------------

_WORK_EDGE = 800  # long edge of the copy used for lines and marks
_INK_STEP = 40  # luminance difference from the background that counts as ink
_VIVID_SAT = 70  # HSV saturation (0..255) from which a colour counts as vivid
_VIVID_VAL = 60


def _open(data: bytes) -> tuple[int, int, Image.Image, bool]:
    with Image.open(io.BytesIO(data)) as opened:
        width, height = opened.size  # from the header: draft() below changes .size
        opened.draft("RGB", (_WORK_EDGE, _WORK_EDGE))  # JPEG: decode at reduced size
        img = opened.copy()
    transparent = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    if transparent:
        rgba = img.convert("RGBA")
        alpha = rgba.getchannel("A")
        transparent = cast("tuple[int, int]", alpha.getextrema())[0] < 255
        base = Image.new("RGB", rgba.size, (255, 255, 255))
        base.paste(rgba, mask=alpha)
        return width, height, base, transparent
    return width, height, img.convert("RGB"), False


def _work_copy(rgb: Image.Image) -> Image.Image:
    factor = math.ceil(max(rgb.size) / _WORK_EDGE)
    return rgb.reduce(factor) if factor > 1 else rgb


def _crop(img: Image.Image, left: int, top: int, right: int, bottom: int) -> Image.Image:
    """A crop clamped to the image, empty rather than inverted at the edges."""
    w, h = img.size
    left, right = max(0, min(left, w)), max(0, min(right, w))
    top, bottom = max(0, min(top, h)), max(0, min(bottom, h))
    return img.crop((left, top, max(left, right), max(top, bottom)))


def _runs(row: bytes) -> list[tuple[int, int]]:
    """(start, end) of each run of set (255) bytes."""
    return [m.span() for m in re.finditer(b"\xff+", row)]


def _straight_lines(
    ink: Image.Image,
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """Long thin straight lines of ink: (position, start, end) horizontal and vertical.

    A line is a row (column) with a contiguous run of ink over 30% of the width
    (height) while the row a few pixels away on at least one side is mostly
    empty (an axis may border a filled plot on the other), so text and
    photographs do not count.
    """

    def scan(mask: Image.Image) -> list[tuple[int, int, int]]:
        w, h = mask.size
        profile = list(mask.resize((1, h), Image.Resampling.BOX).tobytes())
        raw = mask.tobytes()
        found: list[tuple[int, int, int]] = []
        for y, level in enumerate(profile):
            if level < 0.3 * 255:
                continue
            near = [profile[j] if 0 <= j < h else 0 for j in (y - 3, y + 3)]
            if min(near) >= 0.25 * 255:  # not thin: an edge of a large area, or texture
                continue
            best = max(_runs(raw[y * w : (y + 1) * w]), key=lambda r: r[1] - r[0], default=None)
            if best is None or best[1] - best[0] < 0.3 * w:
                continue
            if found and y - found[-1][0] <= 2:  # the same line, more than one pixel thick
                continue
            found.append((y, best[0], best[1]))
        return found

    horizontal = scan(ink)
    vertical = scan(ink.transpose(Image.Transpose.TRANSPOSE))
    return horizontal, vertical


def _bands(mask: Image.Image) -> list[tuple[int, int]]:
    """Bands of rows holding ink, from the top down, split by 2+ empty rows."""
    w, h = mask.size
    raw = mask.tobytes()
    bands: list[tuple[int, int]] = []
    start = last = -9
    for y in range(h):
        if b"\xff" in raw[y * w : (y + 1) * w]:
            if y - last > 2:
                if last >= 0:
                    bands.append((start, last + 1))
                start = y
            last = y
    if last >= 0:
        bands.append((start, last + 1))
    return bands


def _text_bands(region: Image.Image) -> int:
    """How many bands of text lie beyond an axis (the region's top row touches it).

    Tick marks come first, short and against the axis; they are not text.
    Bands closer than 4 rows are one (characters of a label read sideways).
    """
    if region.width < 1 or region.height < 1:
        return 0
    bands = _bands(region)
    if len(bands) >= 2 and bands[0][0] <= 2:
        ticks, nxt = bands[0], bands[1]
        if ticks[1] - ticks[0] <= 0.6 * (nxt[1] - nxt[0]):
            bands = bands[1:]
    merged: list[tuple[int, int]] = []
    for band in bands:
        if merged and band[0] - merged[-1][1] < 4:
            merged[-1] = (merged[-1][0], band[1])
        else:
            merged.append(band)
    return sum(1 for a, b in merged if b - a >= 3)


def _labels(ink: Image.Image, box: tuple[int, int, int, int]) -> tuple[bool, bool, bool]:
    """(title, x label, y label) found around a plot area, as bands of ink.

    Outside an axis come its tick marks, then the tick labels, then the axis
    label: an axis label is a second band of text beyond the axis.
    """
    h = ink.height
    left, top, right, bottom = box
    above = _crop(ink, left, 0, right + 1, top - 1)
    below = _crop(ink, left, bottom + 2, right + 1, h)
    side = _crop(ink, 0, top, left - 1, bottom + 1)
    title = _text_bands(above.transpose(Image.Transpose.FLIP_TOP_BOTTOM)) >= 1
    xlabel = _text_bands(below) >= 2
    ylabel = _text_bands(side.transpose(Image.Transpose.ROTATE_90)) >= 2
    return title, xlabel, ylabel


def _vivid_groups(
    img: Image.Image,
) -> list[tuple[str, str, int, Image.Image]]:
    """Saturated colours, grouped by hue: (name, hex, pixels, mask), largest first."""
    hue, sat, val = img.convert("HSV").split()
    vivid = ImageChops.multiply(
        sat.point(lambda v: 255 if v >= _VIVID_SAT else 0),
        val.point(lambda v: 255 if v >= _VIVID_VAL else 0),
    )
    hist = hue.histogram(mask=vivid)
    area = img.width * img.height
    floor = max(3, area // 5000)
    # Clusters of neighbouring hue bins (hue is circular), split at gaps of 3+ bins.
    busy = [n >= max(1, floor // 4) for n in hist]
    if not any(busy):
        return []
    start = next(i for i in range(256) if not busy[i]) if not all(busy) else 0
    clusters: list[list[int]] = []
    gap = 99
    for step in range(256):
        i = (start + step) % 256
        if busy[i]:
            if gap >= 3 or not clusters:
                clusters.append([])
            clusters[-1].append(i)
            gap = 0
        else:
            gap += 1
    # A wide cluster is a spread of hues (a gradient, a photograph): cut it into
    # pieces of at most 24 bins (34 degrees), each named by its own mean colour.
    pieces: list[list[int]] = []
    for bins in clusters:
        n = math.ceil(len(bins) / 24)
        size = math.ceil(len(bins) / n)
        pieces += [bins[i : i + size] for i in range(0, len(bins), size)]
    groups: dict[str, tuple[str, int, Image.Image]] = {}
    for bins in pieces:
        count = sum(hist[i] for i in bins)
        if count < floor:
            continue
        members = set(bins)
        mask = ImageChops.multiply(
            vivid, hue.point(lambda v, members=members: 255 if v in members else 0)
        )
        # The colour itself, not its anti-aliased edges: the most saturated quarter.
        sat_hist = sat.histogram(mask=mask)
        seen, cut = 0, 255
        while cut > 0 and seen + sat_hist[cut] < count / 4:
            seen += sat_hist[cut]
            cut -= 1
        core = ImageChops.multiply(mask, sat.point(lambda v, c=cut: 255 if v >= c else 0))
        mean = ImageStat.Stat(img, core).mean
        rgb = cast("RGB", tuple(round(c) for c in mean[:3]))
        name = colour_name(rgb)
        if name in _GREYS:  # hues mixed by noise, not one vivid colour
            continue
        if name in groups:  # two hue clusters with one name: keep them together
            hx, n, old = groups[name]
            groups[name] = (
                hx if n >= count else _hex(rgb),
                n + count,
                ImageChops.lighter(old, mask),
            )
        else:
            groups[name] = (_hex(rgb), count, mask)
    return sorted(((name, hx, n, m) for name, (hx, n, m) in groups.items()), key=lambda g: -g[2])


def _medfilt(values: Sequence[float], half: int) -> list[float]:
    n = len(values)
    return [median(values[max(0, i - half) : min(n, i + half + 1)]) for i in range(n)]


def _plateaus(covered: Sequence[int], spans: Sequence[tuple[int, int]]) -> list[int]:
    """Widths of the stretches of adjacent columns whose extent stays put (bars)."""
    widths: list[int] = []
    width = 1
    for i in range(1, len(covered)):
        (s0, e0), (s1, e1) = spans[i - 1], spans[i]
        if covered[i] - covered[i - 1] == 1 and abs(s1 - s0) <= 1 and abs(e1 - e0) <= 1:
            width += 1
        else:
            widths.append(width)
            width = 1
    widths.append(width)
    return widths


def _follow(
    per_col: Sequence[Sequence[tuple[int, int]]], covered: Sequence[int], h: int
) -> list[tuple[int, float]]:
    """(x, y) of one line, followed outwards from its middle.

    Where a column holds more than one run (a legend entry, another part of the
    figure in the same colour), the run touching or nearest the line so far is
    taken; a run far away and detached is skipped unless the line stays gone
    for a while, so a legend does not look like a jump.
    """
    singles = [x for x in covered if len(per_col[x]) == 1]
    middle = (covered[0] + covered[-1]) / 2
    start = min(singles or covered, key=lambda x: abs(x - middle))
    points: dict[int, float] = {}

    def walk(xs: Sequence[int]) -> None:
        prev: float | None = None
        last_x = xs[0]
        for x in xs:
            runs = per_col[x]
            if prev is None:
                s, e = max(runs, key=lambda r: r[1] - r[0])
            else:
                p = prev
                s, e = min(
                    runs,
                    key=lambda r: 0 if r[0] <= p < r[1] else min(abs(r[0] - p), abs(r[1] - 1 - p)),
                )
                far = min(abs(s - p), abs(e - 1 - p)) > 0.1 * h and not s <= p < e
                if far and abs(x - last_x) < 0.1 * len(per_col):
                    continue
            prev = (s + e - 1) / 2
            last_x = x
            points[x] = prev

    i = covered.index(start)
    walk(covered[i:])
    walk(covered[i::-1])
    return sorted(points.items())


def _pieces(per_col: Sequence[Sequence[tuple[int, int]]]) -> list[tuple[list[int], list[int]]]:
    """Connected pieces of runs: (indices into the flattened runs, [x0, x1, y0, y1]).

    Runs in neighbouring columns that overlap (diagonals included) are one
    piece; found with union-find, in one pass over the columns.
    """
    flat = [(x, s, e) for x, runs in enumerate(per_col) for s, e in runs]
    parent = list(range(len(flat)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[int, int] = {}
    for i, (x, _, _) in enumerate(flat):
        first.setdefault(x, i)
    for i, (x, s, e) in enumerate(flat):
        j = first.get(x + 1)
        while j is not None and j < len(flat) and flat[j][0] == x + 1:
            if flat[j][1] <= e and s <= flat[j][2]:
                parent[root(j)] = root(i)
            j += 1
    pieces: dict[int, tuple[list[int], list[int]]] = {}
    for i, (x, s, e) in enumerate(flat):
        members, b = pieces.setdefault(root(i), ([], [x, x, s, e]))
        members.append(i)
        b[0], b[1], b[2], b[3] = min(b[0], x), max(b[1], x), min(b[2], s), max(b[3], e)
    return list(pieces.values())


def _near(a: Sequence[int], b: Sequence[int], gap: int = 8) -> bool:
    """Two boxes [x0, x1, y0, y1] within ``gap`` pixels of each other."""
    return b[0] - a[1] <= gap and a[0] - b[1] <= gap and b[2] - a[3] <= gap and a[2] - b[3] <= gap


def _without_specks(per_col: list[list[tuple[int, int]]], h: int) -> list[list[tuple[int, int]]]:
    """The runs minus small detached pieces: legend entries, slivers peeking out.

    Pieces close to each other (the dashes of one line) are judged together.
    """
    w = len(per_col)
    flat = [(x, run) for x, runs in enumerate(per_col) for run in runs]
    pieces = sorted(_pieces(per_col), key=lambda p: p[1][0])
    group = list(range(len(pieces)))

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i, (_, a) in enumerate(pieces):
        for j in range(i + 1, len(pieces)):
            b = pieces[j][1]
            if b[0] - a[1] > 8:
                break
            if _near(a, b):
                group[root(j)] = root(i)
    extent: dict[int, list[int]] = {}
    for i, (_, (x0, x1, y0, y1)) in enumerate(pieces):
        e = extent.setdefault(root(i), [x0, x1, y0, y1])
        e[0], e[1], e[2], e[3] = min(e[0], x0), max(e[1], x1), min(e[2], y0), max(e[3], y1)
    out: list[list[tuple[int, int]]] = [[] for _ in range(w)]
    for i, (members, _) in enumerate(pieces):
        x0, x1, y0, y1 = extent[root(i)]
        if x1 - x0 >= 0.1 * w or y1 - y0 >= 0.04 * h:
            for k in members:
                x, run = flat[k]
                out[x].append(run)
    for runs in out:
        runs.sort()
    return out


def _columns(mask: Image.Image) -> list[list[tuple[int, int]]]:
    """The runs of set pixels in each column of a mask."""
    w, h = mask.size
    cols = mask.transpose(Image.Transpose.TRANSPOSE).tobytes()
    return [_runs(cols[x * h : (x + 1) * h]) for x in range(w)]


def _rows(mask: Image.Image) -> list[list[tuple[int, int]]]:
    w, h = mask.size
    raw = mask.tobytes()
    return [_runs(raw[y * w : (y + 1) * w]) for y in range(h)]


def _solid(per_col: list[list[tuple[int, int]]], h: int) -> tuple[str, int] | None:
    """("bars", how many) or ("area", 0) when a colour fills tall solid columns.

    Bars are stretches of columns whose top and bottom stay put; an area's
    edge moves from column to column.  Called on rows for horizontal bars.
    """
    covered = [x for x, runs in enumerate(per_col) if runs]
    lengths = [e - s for x in covered for s, e in per_col[x]]
    if median(lengths) <= 0.06 * h or median(len(per_col[x]) for x in covered) > 1.5:
        return None
    per_col = _without_specks(per_col, h)
    covered = [x for x, runs in enumerate(per_col) if runs] or covered
    extents = [(per_col[x][0][0], per_col[x][-1][1]) for x in covered if per_col[x]]
    widths = _plateaus(covered, extents) if extents else []
    bars = [wd for wd in widths if wd >= 3]
    if sum(bars) >= 0.8 * len(covered):
        return "bars", len(bars)
    return "area", 0


def _blobs(per_col: list[list[tuple[int, int]]]) -> bool:
    """Mostly small round pieces: markers of a scatter plot, not dashes of a line."""
    boxes = sorted(b for _, b in _pieces(per_col))
    if len(boxes) < 8:
        return False
    # Dashes follow each other closely along a path; markers lie anywhere.
    chained = sum(1 for a, b in itertools.pairwise(boxes) if b[0] > a[1] and _near(a, b))
    if chained > 0.7 * (len(boxes) - 1):
        return False
    round_ = sum(
        1
        for x0, x1, y0, y1 in boxes
        if 3 <= x1 - x0 + 1 <= 24 and 3 <= y1 - y0 <= 24 and abs((x1 - x0 + 1) - (y1 - y0)) <= 3
    )
    return round_ > 0.6 * len(boxes)


def _trace(mask: Image.Image, name: str, hx: str, count: int) -> Mark:
    """What one colour draws inside the plot area, read column by column."""
    w, h = mask.size
    per_col = _columns(mask)
    covered = [x for x in range(w) if per_col[x]]
    share = count / (w * h)
    span = (covered[0] / w, (covered[-1] + 1) / w)
    solid = _solid(per_col, h)
    if solid is None:
        across = _solid(_rows(mask), w)
        if across is not None and across[0] == "bars":
            return Mark(name, hx, share, "horizontal bars", span, bars=across[1])
    if solid is not None:
        return Mark(name, hx, share, solid[0], span, bars=solid[1])
    runs_per_col = median(len(per_col[x]) for x in covered)
    if runs_per_col >= 2 or len(covered) < 0.25 * w or _blobs(per_col):
        return Mark(name, hx, share, "points", span)
    per_col = _without_specks(per_col, h)
    covered = [x for x in range(w) if per_col[x]]
    if len(covered) < 0.1 * w:
        return Mark(name, hx, share, "points", span)
    span = (covered[0] / w, (covered[-1] + 1) / w)
    line = _follow(per_col, covered, h)
    xs = [x for x, _ in line]
    heights = [1 - y / h for _, y in line]  # 0 at the bottom of the plot area, 1 at the top
    top = max(range(len(xs)), key=lambda i: heights[i])
    low = min(range(len(xs)), key=lambda i: heights[i])
    # A sudden step: the largest change over a few columns, far above the usual change.
    jump = None
    k = 3
    steps = [
        (heights[i + k] - heights[i], i) for i in range(len(xs) - k) if xs[i + k] - xs[i] <= 2 * k
    ]
    if steps:
        usual = median(abs(d) for d, _ in steps)
        d, i = max(steps, key=lambda t: abs(t[0]))
        if abs(d) > max(0.12, 6 * usual + 0.01):
            jump = ((xs[i] + xs[i + k]) / 2 / w, d)
    # A lone spike: the largest departure from the line's running median, away from
    # the ends (where the median window is one-sided and every slope looks like one).
    spike = None
    half = max(3, len(xs) // 12)
    if len(xs) > 4 * half:
        trend = _medfilt(heights, half)
        devs = [v - t for v, t in zip(heights, trend, strict=True)]
        usual = median(abs(d) for d in devs)
        i = max(range(half, len(xs) - half), key=lambda j: abs(devs[j]))
        if abs(devs[i]) > max(0.08, 5 * usual + 0.01):
            spike = (xs[i] / w, devs[i])
    return Mark(
        name,
        hx,
        share,
        "line",
        span,
        rise=heights[-1] - heights[0],
        peak=xs[top] / w,
        trough=xs[low] / w,
        jump=jump,
        spike=spike,
    )


def measure(data: bytes, *, marks: bool = False) -> ImageStats:
    """Measure encoded image bytes (PNG, JPEG, WebP, ...).

    ``marks=True`` also traces the vivid colours of a chart (a few
    milliseconds more); it is left off where only the basics are needed.
    """
    width, height, rgb, transparent = _open(data)
    work = _work_copy(rgb)

    small = rgb.copy()
    small.thumbnail((128, 128), Image.Resampling.BILINEAR)
    stat = ImageStat.Stat(small.convert("L"))
    brightness = stat.mean[0] / 255.0
    contrast = stat.stddev[0] / 255.0

    tiny = work.resize((64, 64), Image.Resampling.NEAREST)  # exact pixels, not blends
    counts = cast(
        "list[tuple[int, tuple[int, int, int]]]",
        sorted(tiny.getcolors(64 * 64) or [], reverse=True),
    )
    total = 64 * 64
    distinct = len(counts)
    top_share = sum(c for c, _ in counts[:4]) / total
    white_share = sum(c for c, px in counts if min(px) >= 235) / total
    background = counts[0][1]

    quant = small.quantize(colors=6, method=Image.Quantize.MEDIANCUT)
    palette = quant.getpalette() or []
    shares: dict[str, tuple[str, float]] = {}
    qcounts = cast("list[tuple[int, int]]", sorted(quant.getcolors(6) or [], reverse=True))
    qtotal = sum(c for c, _ in qcounts) or 1
    for count, index in qcounts:
        px = (palette[3 * index], palette[3 * index + 1], palette[3 * index + 2])
        name = colour_name(px)
        prev = shares.get(name)
        shares[name] = (prev[0] if prev else _hex(px), count / qtotal + (prev[1] if prev else 0.0))
    colours = tuple(sorted(((n, h, s) for n, (h, s) in shares.items()), key=lambda t: -t[2]))

    # Ink: what stands out from the background; straight lines of it frame plots.
    bg_lum = round(0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2])
    lum = work.convert("L")
    ink = lum.point(lambda v: 255 if abs(v - bg_lum) > _INK_STEP else 0)
    ink_share = ink.histogram()[255] / (work.width * work.height)
    horizontal, vertical = _straight_lines(ink)
    box_px: tuple[int, int, int, int] | None = None
    if horizontal and vertical:
        left = min(min(x for x, _, _ in vertical), min(s for _, s, _ in horizontal))
        right = max(max(x for x, _, _ in vertical), max(e - 1 for _, _, e in horizontal))
        top = min(min(y for y, _, _ in horizontal), min(s for _, s, _ in vertical))
        bottom = max(max(y for y, _, _ in horizontal), max(e - 1 for _, _, e in vertical))
        if right - left > 0.2 * work.width and bottom - top > 0.2 * work.height:
            box_px = (left, top, right, bottom)

    labels = _labels(ink, box_px) if box_px is not None else None
    flat = top_share > 0.6 and distinct < 400
    framed = False
    if box_px is not None:
        # Around a plot lies a plain margin (a few tick labels aside), whatever fills it.
        left, top, right, bottom = box_px
        inside = _crop(ink, left, top, right + 1, bottom + 1)
        outside_ink = ink.histogram()[255] - inside.histogram()[255]
        outside = work.width * work.height - inside.width * inside.height
        margin = outside >= 0.08 * work.width * work.height
        framed = top_share > 0.4 or (margin and outside_ink / outside < 0.12)
    if framed:
        kind = "chart or diagram"
    elif flat and white_share > 0.35:
        kind = "diagram, document or screenshot"
    elif flat:
        kind = "screenshot or flat graphic"
    else:
        kind = "photograph"

    # Vivid colours: inside the plot area when there is one (axes and labels are not data).
    if box_px is not None:
        left, top, right, bottom = box_px
        inner = _crop(work, left + 3, top + 3, right - 2, bottom - 2)
        if inner.width < 8 or inner.height < 8:
            inner = work
    else:
        inner = work
    groups = _vivid_groups(inner)
    inner_area = inner.width * inner.height
    vivid = tuple((name, hx, n / inner_area) for name, hx, n, _ in groups)
    traced: tuple[Mark, ...] | None = None
    if marks and kind != "chart or diagram":
        traced = ()
    elif marks and sum(share for _, _, share in vivid) > 0.5:  # an image or a heatmap
        traced = tuple(Mark(name, hx, share, "area", (0.0, 1.0)) for name, hx, share in vivid)
    elif marks:
        traced = tuple(_trace(mask, name, hx, n) for name, hx, n, mask in groups)

    ww, wh = work.size
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
        background=colour_name(background),
        ink=ink_share,
        lines=(len(horizontal), len(vertical)),
        plot_box=None
        if box_px is None or kind != "chart or diagram"
        else (box_px[0] / ww, box_px[1] / wh, (box_px[2] + 1) / ww, (box_px[3] + 1) / wh),
        vivid=vivid,
        labels=labels if kind == "chart or diagram" else None,
        marks=traced,
    )
