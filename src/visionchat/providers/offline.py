"""The offline demo model: no key, no network, answers from measurements.

It exists so the quickstart and the teaching notebooks run anywhere, and so a
class can see streaming, images and conversations work before anyone has an
API key.  It never pretends to understand a picture: every answer says what it
measured (size, colours, brightness, chart or photograph; for a chart the
lines, bars and points in it, a spike or a sudden jump, whether a title and
axis labels are there), says it comes from the demo model, and says how to
switch to a real one.  Output is paced like a real model so streaming is visible.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from .. import catalog
from .._image_stats import ImageStats, Mark, measure
from .._schema_fill import fill
from ..images import PreparedImage
from ..schema import extract_requested_schema
from .base import (
    HistoryTurn,
    ModelInfo,
    StreamEvent,
    TextDelta,
    TurnRequest,
    TurnResult,
    UploadProgress,
    Usage,
)

__all__ = ["MODEL_ID", "SWITCH_HINT", "OfflineProvider", "compose_answer", "intents"]

MODEL_ID = "offline-demo"

SWITCH_HINT = (
    "_This answer comes from visionchat's **offline demo model**, which measures images "
    "but does not understand them. For a real vision model, set `ONEMIN_API_KEY` "
    "(1min.ai) or `OPENAI_API_KEY` / `OPENAI_BASE_URL` (any OpenAI-compatible server) "
    "and start a new `Conversation`._"
)

# The catalog is the one place that describes the model (limits, price: free).
_INFO = catalog.get_model(MODEL_ID) or ModelInfo(id=MODEL_ID, vendor="visionchat")
_CACHE_SIZE = 256  # measured images kept per provider (a measurement is small)


class OfflineProvider:
    """A deterministic stand-in model that streams measured facts about images.

    ``words_per_second`` paces the stream (a few dozen, like a real model; the
    ``VISIONCHAT_OFFLINE_WPS`` environment variable sets the default, so a test
    run can execute demo notebooks at full speed with ``0``); ``instant=True``
    or ``words_per_second=0`` streams without pauses.
    ``sleep`` is the coroutine used to pause, injectable for tests.
    """

    name = "offline"
    keeps_history = False

    def __init__(
        self,
        words_per_second: float | None = None,
        *,
        instant: bool = False,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if words_per_second is None:
            words_per_second = float(os.environ.get("VISIONCHAT_OFFLINE_WPS") or 30.0)
        self.words_per_second = 0.0 if instant else max(0.0, float(words_per_second))
        self._sleep = sleep
        self._stats: OrderedDict[str, ImageStats] = OrderedDict()

    def __repr__(self) -> str:
        return f"OfflineProvider(words_per_second={self.words_per_second:g})"

    def model_info(self, model: str) -> ModelInfo | None:
        return _INFO

    async def list_models(self) -> list[ModelInfo]:
        return [_INFO]

    async def upload(self, image: PreparedImage) -> str:
        await self._measure(image)
        return f"offline:{image.sha256}"

    async def _measure(self, image: PreparedImage) -> ImageStats:
        stats = self._stats.get(image.sha256)
        if stats is None:
            # Tens of milliseconds of Pillow work: off the event loop, which may
            # be streaming other turns meanwhile.
            stats = await asyncio.to_thread(measure, image.data, marks=True)
            self._stats[image.sha256] = stats
            while len(self._stats) > _CACHE_SIZE:
                self._stats.popitem(last=False)
        else:
            self._stats.move_to_end(image.sha256)
        return stats

    async def stream(self, request: TurnRequest) -> AsyncIterator[StreamEvent]:
        images = list(request.images)
        stats: list[ImageStats] = []
        for i, image in enumerate(images):
            stats.append(await self._measure(image))
            yield UploadProgress(i + 1, len(images))
        earlier: list[tuple[int, ImageStats]] = []
        users = [t for t in request.history if t.role == "user"]
        for number, turn in enumerate(users, 1):
            for image in turn.images:
                earlier.append((number, await self._measure(image)))
        wanted = requested_schema(request)
        if wanted is not None:  # a structured answer: the measurements as JSON
            text = json.dumps(fill(wanted, stats), indent=2, ensure_ascii=False)
        else:
            text = compose_answer(request.prompt, stats, request.history, earlier=earlier)
        if request.web_search and wanted is None:
            text = text.replace(
                SWITCH_HINT, "I cannot search the web: I work offline.\n\n" + SWITCH_HINT
            )
        pause = 1.0 / self.words_per_second if self.words_per_second else 0.0
        words = re.findall(r"\S+\s*|\s+", text)
        for i, word in enumerate(words):
            if i and pause:
                await self._sleep(pause)
            yield TextDelta(word)
        sent_text = len(request.prompt) + sum(len(t.text) for t in request.history)
        sent_images = len(images) + sum(len(t.images) for t in request.history)
        yield TurnResult(
            model=MODEL_ID,
            usage=Usage(
                input_tokens=max(1, sent_text // 4) + 85 * sent_images,
                output_tokens=max(1, len(text) // 4),
            ),
        )

    async def aclose(self) -> None:
        self._stats.clear()


def requested_schema(request: TurnRequest) -> dict[str, Any] | None:
    """The JSON Schema a turn asks for: as ``response_format``, or in its prompt."""
    fmt = request.options.get("response_format")
    if isinstance(fmt, dict):
        inner = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(inner, dict):
            return inner
    return extract_requested_schema(request.prompt)


# -- wording ------------------------------------------------------------------


def _pct(x: float) -> str:
    """A share as a percentage, with a decimal where whole numbers would hide it."""
    return f"{x:.1%}" if 0 < abs(x) < 0.095 else f"{x:.0%}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _pos(x: float) -> str:
    """A position across the plot, as a whole percentage."""
    return f"{x:.0%}"


def _mark_phrase(m: Mark) -> str:
    if m.shape == "line":
        return f"{_a(m.colour)} line ({m.hex})"
    if m.shape in ("bars", "horizontal bars"):
        kind = "horizontal bar" if m.shape == "horizontal bars" else "bar"
        return f"{m.bars} {m.colour} {kind}{'s' if m.bars != 1 else ''} ({m.hex})"
    if m.shape == "points":
        return f"scattered {m.colour} points ({m.hex})"
    return f"{_a(m.colour)} filled area ({m.hex}, {_pct(m.share)} of the plot)"


def _heatmap(s: ImageStats) -> bool:
    return bool(s.marks) and sum(m.share for m in s.marks or ()) > 0.5


def _contents(s: ImageStats) -> str:
    """One line on what a chart's plot area holds."""
    if not s.marks:
        return "no vivid colours inside the plot area (grey or black marks only)"
    if _heatmap(s):
        names = _join([f"{m.colour} ({m.hex})" for m in s.marks[:4]])
        return f"the plot area is filled with colour, like an image or a heatmap: {names}"
    return _join([_mark_phrase(m) for m in s.marks[:6]])


def _labels_line(s: ImageStats) -> str | None:
    if s.labels is None:
        return None
    title, xlabel, ylabel = s.labels
    found = [
        "a title above the plot" if title else "no title above the plot",
        "an x-axis label" if xlabel else "no x-axis label",
        "a y-axis label" if ylabel else "no y-axis label",
    ]
    return f"Text around the plot: {_join(found)} (found as bands of text, not read)."


def _describe(head: str, s: ImageStats) -> list[str]:
    contrast = "high" if s.contrast > 0.25 else "low" if s.contrast < 0.08 else "moderate"
    colours = ", ".join(f"{name} ({hx}, {_pct(share)})" for name, hx, share in s.colours[:4])
    lines = [
        f"{head}: {s.width}×{s.height} px ({s.orientation}), looks like a **{s.kind}**.",
        f"- Brightness: {s.brightness_word} (mean {_pct(s.brightness)}); "
        f"contrast {contrast} (σ {s.contrast:.2f}).",
        f"- Main colours: {colours}.",
    ]
    if s.is_chart and s.plot_box is not None:
        left, top, right, bottom = s.plot_box
        lines.append(
            f"- A plot area framed by axes ({_pct(right - left)} × {_pct(bottom - top)} of the "
            "image) "
            f"holding {_contents(s)}."
        )
        labels = _labels_line(s)
        if labels:
            lines.append(f"- {labels}")
    else:
        main = {name for name, _, _ in s.colours[:4]}
        extra = [(n, h, share) for n, h, share in s.vivid if n not in main and share >= 0.002]
        if extra:
            lines.append(
                "- Also vivid: "
                + ", ".join(f"{n} ({h}, {_pct(share)})" for n, h, share in extra[:4])
                + "."
            )
    if s.transparent:
        lines.append("- It has transparent areas.")
    return lines


_LABEL_NAMES = ("a title", "an x-axis label", "a y-axis label")


def _findings(s: ImageStats) -> list[str]:
    """What stands out in a chart, by measurement."""
    out: list[str] = []
    lines = [m for m in s.marks or () if m.shape == "line"]
    notable = False
    for m in lines:
        spike_x = m.spike[0] if m.spike else None
        if m.spike:
            x, d = m.spike
            out.append(
                f"- The {m.colour} line has a lone spike {'up' if d > 0 else 'down'} at about "
                f"{_pos(x)} of the way across the plot, {_pct(abs(d))} of the plot's height "
                f"{'above' if d > 0 else 'below'} the line around it."
            )
            notable = True
        if m.jump and (spike_x is None or abs(m.jump[0] - spike_x) > 0.05):
            x, d = m.jump
            out.append(
                f"- The {m.colour} line jumps {'up' if d > 0 else 'down'} suddenly at about "
                f"{_pos(x)} of the way across (by {_pct(abs(d))} of the plot's height)."
            )
            notable = True
        if m.rise > 0.15:
            trend = f"rises overall (it ends {_pct(m.rise)} of the plot's height above its start)"
        elif m.rise < -0.15:
            trend = f"falls overall (it ends {_pct(-m.rise)} of the plot's height below its start)"
        else:
            trend = "ends about as high as it starts"
        where = ""
        if m.peak is not None and m.trough is not None:
            where = f"; highest at about {_pos(m.peak)} across, lowest at about {_pos(m.trough)}"
        seen = ""
        if m.span[0] > 0.15 or m.span[1] < 0.85:
            seen = f" (seen only from {_pos(m.span[0])} to {_pos(m.span[1])} across)"
        out.append(f"- The {m.colour} line{seen} {trend}{where}.")
    if lines and not notable:
        out.insert(0, "- No lone spike or sudden jump in the lines: nothing stands out that way.")
    bars = [m for m in s.marks or () if m.shape in ("bars", "horizontal bars")]
    if bars:
        total = sum(m.bars for m in bars)
        colours = _join([m.colour for m in bars])
        out.append(f"- {total} bar{'s' if total != 1 else ''} in all, in {colours}.")
    if s.labels is not None and not all(s.labels):
        missing = [name for name, there in zip(_LABEL_NAMES, s.labels, strict=True) if not there]
        out.append(f"- To be readable it may need {_join(missing)}.")
    return out


def _compare(a: ImageStats, b: ImageStats, names: tuple[str, str]) -> list[str]:
    """Measured differences from ``a`` to ``b``; ``names`` are how to call them."""
    first, second = names
    cap = second[0].upper() + second[1:]
    out: list[str] = []
    if (a.width, a.height) == (b.width, b.height):
        out.append(f"- Same size, {a.width}×{a.height} px.")
    else:
        bigger = first if a.width * a.height > b.width * b.height else second
        out.append(
            f"- Sizes differ: {a.width}×{a.height} vs {b.width}×{b.height} px ({bigger} is larger)."
        )
    diff = b.brightness - a.brightness
    if abs(diff) < 0.03:
        out.append("- Brightness is about the same.")
    else:
        out.append(f"- {cap} is {'brighter' if diff > 0 else 'darker'} by {_pct(abs(diff))}.")
    ca, cb = a.colours[0][0], b.colours[0][0]
    out.append(f"- Main colour: {ca} vs {cb}." if ca != cb else f"- Both are mostly {ca}.")
    va = {n for n, _, share in a.vivid if share >= 0.002}
    vb = {n for n, _, share in b.vivid if share >= 0.002}
    if vb - va:
        out.append(f"- Vivid colours only in {second}: {_join(sorted(vb - va))}.")
    if va - vb:
        out.append(f"- Vivid colours only in {first}: {_join(sorted(va - vb))}.")
    if a.kind != b.kind:
        out.append(
            f"- {first[0].upper() + first[1:]} looks like a {a.kind}, {second} like a {b.kind}."
        )
    if abs(b.ink - a.ink) >= 0.002:
        more = "more" if b.ink > a.ink else "less"
        out.append(
            f"- {cap} has {more} drawn on it: {_pct(b.ink)} of its pixels stand out from "
            f"the background, against {_pct(a.ink)}."
        )
    if a.labels is not None and b.labels is not None and a.labels != b.labels:
        pairs = list(zip(_LABEL_NAMES, a.labels, b.labels, strict=True))
        added = [n for n, x, y in pairs if y and not x]
        dropped = [n for n, x, y in pairs if x and not y]
        if added:
            out.append(f"- {cap} adds {_join(added)}.")
        if dropped:
            out.append(f"- {cap} has lost {_join(dropped)}.")
    if a.is_chart and b.is_chart and _contents(a) != _contents(b):
        out.append(f"- In the plot: {_contents(a)} in {first}; {_contents(b)} in {second}.")
    if a == b:
        out.append("- Every measurement is the same: most likely the same picture.")
    return out


def _closest(
    target: ImageStats, earlier: Sequence[tuple[int, ImageStats]]
) -> tuple[int, ImageStats]:
    """The earlier image most like ``target`` (what "now" or "different" refers to)."""

    def distance(item: tuple[int, ImageStats]) -> tuple[float, int]:
        s = item[1]
        size = 0.0 if (s.width, s.height) == (target.width, target.height) else 1.0
        colour = 0.0 if s.colours[0][0] == target.colours[0][0] else 0.5
        kind = 0.0 if s.kind == target.kind else 0.5
        return size + colour + kind + abs(s.brightness - target.brightness), -item[0]

    return min(earlier, key=distance)


# -- what was asked ------------------------------------------------------------

# Several may match one question ("What is odd here, and what is missing to read
# it?"); each gets its paragraph, in this order.
_INTENTS = (
    ("compare", r"\b(compar\w*|differ\w*|vs\.?|versus|same|similar\w*|changed?)\b"),
    (
        "chart",
        r"\b(odd|wrong|strange|weird|unusual|anomal\w*|outliers?|trends?|spikes?|jumps?|"
        r"peaks?|rises?|falls?|where|behaviou?r|missing|stands? out)\b",
    ),
    ("count", r"\b(how many|count\w*|number of)\b"),
    ("colours", r"\b(colou?rs?|palette|hues?)\b"),
    ("text", r"\b(read|text|ocr|says?|written|labels?|titles?|words?|caption|legend)\b"),
    ("table", r"\b(tables?|tabulate|tabular|measurements?|statistics|stats)\b"),
)
_FOLLOW_UP = re.compile(r"\b(now|again|clearer|better|improved?|still|this time|fixed)\b", re.I)


def intents(prompt: str) -> list[str]:
    """What the question asks for, as the demo model understands it."""
    p = prompt.lower()
    return [name for name, pattern in _INTENTS if re.search(pattern, p)] or ["describe"]


def _history_line(history: Sequence[HistoryTurn]) -> str | None:
    asked = [t.text.strip() for t in history if t.role == "user" and t.text.strip()]
    if not asked:
        return None

    def cut(q: str) -> str:
        return q if len(q) <= 80 else q[:77] + "…"

    count = f"{len(asked)} earlier question{'s' if len(asked) != 1 else ''}"
    if len(asked) == 1:
        return f"Continuing our conversation ({count}: “{cut(asked[0])}”)."
    return (
        f"Continuing our conversation ({count}; the first: “{cut(asked[0])}”, "
        f"the last: “{cut(asked[-1])}”)."
    )


def _answer_compare(
    stats: Sequence[ImageStats], earlier: Sequence[tuple[int, ImageStats]], asked: bool
) -> str | None:
    if len(stats) >= 2 and asked:
        rows = _compare(stats[0], stats[1], ("image 1", "image 2"))
        return "**Image 1 against image 2** (measured):\n" + "\n".join(rows)
    if len(stats) == 1 and earlier:
        number, before = _closest(stats[0], earlier)
        rows = _compare(before, stats[0], ("that one", "this one"))
        return (
            f"**Against the most similar earlier image** (from your {_ordinal(number)} "
            "message):\n" + "\n".join(rows)
        )
    if asked:
        return "To compare, attach two images to the same message."
    return None


def _answer_chart(subject: Sequence[ImageStats]) -> str:
    charts = [s for s in subject if s.is_chart]
    if not charts:
        return (
            f"This does not look like a chart to me (it looks like a {subject[0].kind}): "
            "I find no plot area framed by axes."
        )
    if _heatmap(charts[0]):
        return "The plot area is filled with colour; I cannot read values from it."
    found = _findings(charts[0]) or ["- I find no lines or bars in colour to measure."]
    return (
        "**What stands out** (measured; positions from the left edge of the plot):\n"
        + "\n".join(found)
        + "\n\nI cannot read the axes, so I cannot say which values these positions are; "
        "a real model can read the labels and the numbers."
    )


def _answer_count(main: ImageStats) -> str:
    if not (main.is_chart and main.marks):
        vivid = len(main.vivid)
        return (
            "I cannot count objects: this demo model measures colours and shapes, not things. "
            f"I find {vivid} vivid colour{'s' if vivid != 1 else ''} and "
            f"{main.distinct_colours} distinct colours in a 64×64 sample."
        )
    marks = main.marks
    lines = sum(1 for m in marks if m.shape == "line")
    bars = sum(m.bars for m in marks if m.bars)
    counted = []
    if lines:
        counted.append(f"{lines} line{'s' if lines != 1 else ''}")
    if bars:
        counted.append(f"{bars} bar{'s' if bars != 1 else ''}")
    points = [m.colour for m in marks if m.shape == "points"]
    if points:
        counted.append(f"scattered points in {_join(points)}")
    return (
        f"Counted in the plot area, one colour at a time: {_join(counted) or 'no lines or bars'}."
        " Lines that share a colour count as one."
    )


def _answer_colours(main: ImageStats) -> str:
    vivid = [f"{n} ({h}, {_pct(share)})" for n, h, share in main.vivid[:5]]
    n = main.distinct_colours
    return (
        f"The dominant colour is **{main.colours[0][0]}** ({main.colours[0][1]}) and the "
        f"background is {main.background}; I count {n} distinct colour{'s' if n != 1 else ''}"
        " in a 64×64 sample. "
        + (f"Vivid colours: {', '.join(vivid)}." if vivid else "There are no vivid colours.")
    )


def _answer_text(subject: Sequence[ImageStats]) -> str:
    said = (
        "I cannot read text in images: this demo model only measures sizes, colours and "
        "shapes. A real vision model can read titles, labels and legends."
    )
    if any(s.labels is not None for s in subject):
        said += " Where text sits around a plot is measured above."
    return said


def _answer_table(subject: Sequence[ImageStats]) -> str:
    """The measurements side by side: the markdown table a teacher can point at."""
    heads = (
        ["The image"] if len(subject) == 1 else [f"Image {i}" for i in range(1, len(subject) + 1)]
    )
    rows: list[tuple[str, Callable[[ImageStats], str]]] = [
        ("Size (px)", lambda s: f"{s.width}×{s.height}"),
        ("Looks like", lambda s: s.kind),
        ("Mean brightness", lambda s: _pct(s.brightness)),
        ("Contrast (σ)", lambda s: f"{s.contrast:.2f}"),
        ("Main colour", lambda s: f"{s.colours[0][0]} ({s.colours[0][1]})" if s.colours else "–"),
        ("Distinct colours (64×64)", lambda s: str(s.distinct_colours)),
        ("Near-white pixels", lambda s: _pct(s.white_share)),
    ]
    out = ["| Measurement | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    out += [f"| {name} | " + " | ".join(f(s) for s in subject) + " |" for name, f in rows]
    return "\n".join(out)


def compose_answer(
    prompt: str,
    stats: Sequence[ImageStats],
    history: Sequence[HistoryTurn] = (),
    *,
    earlier: Sequence[tuple[int, ImageStats]] = (),
) -> str:
    """The demo model's whole answer, in markdown; deterministic for the same input.

    ``earlier`` holds the images of earlier user messages as (message number,
    measurements), so a follow-up ("and now?") can be compared with them.
    """
    parts: list[str] = []
    context = _history_line(history)
    if context:
        parts.append(context)
    asked = intents(prompt)
    subject = list(stats)
    if not stats and earlier:
        number, last = earlier[-1]
        parts.append(
            "No new image in this message, so I use the last one you showed me "
            f"(in your {_ordinal(number)} message).\n\n"
            + "\n".join(_describe("**That image**", last))
        )
        subject = [last]
    elif not stats:
        parts.append(
            "I have no image in this message. Attach one (a PIL image, a NumPy array, a "
            "matplotlib figure, a file or a URL) and I will measure it."
        )
    else:
        numbered = len(stats) > 1
        for i, s in enumerate(stats, 1):
            parts.append("\n".join(_describe(f"**Image {i}**" if numbered else "**The image**", s)))

    if subject:
        follow_up = bool(_FOLLOW_UP.search(prompt))
        if "compare" in asked or (follow_up and stats):
            compared = _answer_compare(stats, earlier, "compare" in asked)
            if compared:
                parts.append(compared)
        if "chart" in asked:
            parts.append(_answer_chart(subject))
        if "count" in asked:
            parts.append(_answer_count(subject[0]))
        if "colours" in asked:
            parts.append(_answer_colours(subject[-1]))
        if "text" in asked:
            parts.append(_answer_text(subject))
        if "table" in asked:
            parts.append(_answer_table(subject))
    if prompt.strip():
        q = prompt.strip()
        q = q if len(q) <= 120 else q[:117] + "…"
        parts.append(f"You asked: “{q}”" + ("" if q[-1] in ".?!…" else "."))
    parts.append(SWITCH_HINT)
    return "\n\n".join(parts)
