"""The offline demo model: no key, no network, answers from measurements.

It exists so the quickstart and the teaching notebooks run anywhere, and so a
class can see streaming, images and conversations work before anyone has an
API key.  It never pretends to understand a picture: every answer says what it
measured (size, colours, brightness, whether it looks like a chart or a
photograph), says it comes from the demo model, and says how to switch to a
real one.  Output is paced like a real model so streaming is visible.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from .. import catalog
from .._image_stats import ImageStats, measure
from ..images import PreparedImage
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

__all__ = ["MODEL_ID", "OfflineProvider"]

MODEL_ID = "offline-demo"

SWITCH_HINT = (
    "_This answer comes from visionchat's **offline demo model**, which measures images "
    "but does not understand them. For a real vision model, set `ONEMIN_API_KEY` "
    "(1min.ai) or `OPENAI_API_KEY` / `OPENAI_BASE_URL` (any OpenAI-compatible server) "
    "and start a new `Conversation`._"
)

# The catalog is the one place that describes the model (limits, price: free).
_INFO = catalog.get_model(MODEL_ID) or ModelInfo(id=MODEL_ID, vendor="visionchat")


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
        self._stats: dict[str, ImageStats] = {}

    def __repr__(self) -> str:
        return f"OfflineProvider(words_per_second={self.words_per_second:g})"

    def model_info(self, model: str) -> ModelInfo | None:
        return _INFO

    async def list_models(self) -> list[ModelInfo]:
        return [_INFO]

    async def upload(self, image: PreparedImage) -> str:
        if image.sha256 not in self._stats:
            self._stats[image.sha256] = measure(image.data)
        return f"offline:{image.sha256}"

    def _measure(self, image: PreparedImage) -> ImageStats:
        if image.sha256 not in self._stats:
            self._stats[image.sha256] = measure(image.data)
        return self._stats[image.sha256]

    async def stream(self, request: TurnRequest) -> AsyncIterator[StreamEvent]:
        images = list(request.images)
        for i, image in enumerate(images):
            await self.upload(image)
            yield UploadProgress(i + 1, len(images))
        text = compose_answer(
            request.prompt, [self._measure(img) for img in images], request.history
        )
        pause = 1.0 / self.words_per_second if self.words_per_second else 0.0
        words = re.findall(r"\S+\s*|\s+", text)
        for i, word in enumerate(words):
            if i and pause:
                await self._sleep(pause)
            yield TextDelta(word)
        prompt_tokens = max(1, len(request.prompt) // 4) + 85 * len(images)
        yield TurnResult(
            model=MODEL_ID,
            usage=Usage(input_tokens=prompt_tokens, output_tokens=max(1, len(text) // 4)),
        )

    async def aclose(self) -> None:
        self._stats.clear()


# -- composing the answer -----------------------------------------------------


def _describe(n: int | None, s: ImageStats) -> list[str]:
    head = f"**Image {n}**" if n is not None else "**The image**"
    colours = ", ".join(f"{name} ({hx}, {share:.0%})" for name, hx, share in s.colours[:4])
    lines = [
        f"{head}: {s.width}×{s.height} px ({s.orientation}), looks like a **{s.kind}**.",
        f"- Brightness: {s.brightness_word} (mean {s.brightness:.0%}); "
        f"contrast {'high' if s.contrast > 0.25 else 'low' if s.contrast < 0.08 else 'moderate'}"
        f" (σ {s.contrast:.2f}).",
        f"- Main colours: {colours}.",
    ]
    if s.transparent:
        lines.append("- It has transparent areas.")
    return lines


def _intent(prompt: str) -> str:
    p = prompt.lower()
    if re.search(r"\b(compare|comparison|differ|difference|vs\.?|versus|same)\b", p):
        return "compare"
    if re.search(r"\b(read|text|ocr|says?|written|label|title|words?)\b", p):
        return "text"
    if re.search(r"\b(colou?rs?|palette|hue)\b", p):
        return "colours"
    if re.search(
        r"\b(odd|wrong|strange|weird|anomal\w*|outlier|trend|plot|chart|graph|axis|axes)\b", p
    ):
        return "chart"
    return "describe"


def _compare(stats: Sequence[ImageStats]) -> list[str]:
    a, b = stats[0], stats[1]
    out = ["**Comparison of image 1 and image 2:**"]
    if (a.width, a.height) == (b.width, b.height):
        out.append(f"- Same size, {a.width}×{a.height} px.")
    else:
        bigger = 1 if a.width * a.height > b.width * b.height else 2
        out.append(
            f"- Sizes differ: {a.width}×{a.height} vs {b.width}×{b.height} px "
            f"(image {bigger} is larger)."
        )
    diff = b.brightness - a.brightness
    if abs(diff) < 0.03:
        out.append("- Brightness is about the same.")
    else:
        out.append(f"- Image 2 is {'brighter' if diff > 0 else 'darker'} by {abs(diff):.0%}.")
    ca, cb = a.colours[0][0], b.colours[0][0]
    out.append(f"- Main colour: {ca} vs {cb}." if ca != cb else f"- Both are mostly {ca}.")
    if a.kind != b.kind:
        out.append(f"- Image 1 looks like a {a.kind}, image 2 like a {b.kind}.")
    return out


def compose_answer(
    prompt: str, stats: Sequence[ImageStats], history: Sequence[HistoryTurn] = ()
) -> str:
    """The demo model's whole answer, in markdown; deterministic for the same input."""
    parts: list[str] = []
    asked = [t.text for t in history if t.role == "user" and t.text.strip()]
    if asked:
        last = asked[-1] if len(asked[-1]) <= 80 else asked[-1][:77] + "…"
        parts.append(
            f"Continuing our conversation ({len(asked)} earlier question"
            f"{'s' if len(asked) != 1 else ''}; last: “{last}”)."
        )
    intent = _intent(prompt)
    if not stats:
        parts.append(
            "I have no image in this message. Attach one (a PIL image, a NumPy array, a "
            "matplotlib figure, a file or a URL) and I will measure it."
        )
    else:
        numbered = len(stats) > 1
        for i, s in enumerate(stats, 1):
            parts.append("\n".join(_describe(i if numbered else None, s)))
        if intent == "compare" and len(stats) >= 2:
            parts.append("\n".join(_compare(stats)))
        elif intent == "compare":
            parts.append("To compare, attach two images to the same message.")
        elif intent == "text":
            parts.append(
                "I cannot read text in images: the offline demo model only measures "
                "sizes and colours. A real vision model can read labels and titles."
            )
        elif intent == "colours":
            s = stats[0]
            parts.append(
                f"The dominant colour is **{s.colours[0][0]}** ({s.colours[0][1]}); "
                f"I count about {s.distinct_colours} distinct "
                f"colour{'s' if s.distinct_colours != 1 else ''} in a 64×64 sample."
            )
        elif intent == "chart":
            charts = [i for i, s in enumerate(stats, 1) if s.kind == "chart or diagram"]
            if charts:
                parts.append(
                    "This looks like a chart (few flat colours on a light background). "
                    "I cannot judge whether anything in it is odd; a real model can read "
                    "axes, labels and trends."
                )
            else:
                parts.append("This does not look like a chart to me (too many colours for a plot).")
    if prompt.strip():
        q = prompt.strip()
        q = q if len(q) <= 120 else q[:117] + "…"
        parts.append(f"You asked: “{q}”" + ("" if q[-1] in ".?!…" else "."))
    parts.append(SWITCH_HINT)
    return "\n\n".join(parts)
