"""What a turn will cost before it is sent, and what the turns did cost.

Backends report cost in different currencies: 1min.ai in credits, OpenAI-style
APIs in tokens, the offline model in nothing.  The estimate is computed the
same way for all of them so a user can compare before pressing enter: text at
about four characters per token, each image at the resolution actually sent
(after ``prepare_image`` downscaled it), with the vendor's published image
formula, priced from the catalog.  Estimates are deliberately simple and are
labelled as estimates wherever they are shown.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .providers.base import ModelInfo

__all__ = [
    "CostReport",
    "CostRow",
    "Estimate",
    "estimate_turn",
    "image_tokens",
    "text_tokens",
]

#: Rough but stable: English prose averages about four characters per token.
CHARS_PER_TOKEN = 4


def text_tokens(text: str) -> int:
    """Estimated tokens of ``text`` (characters / 4, rounded up)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _vendor(model: str, info: ModelInfo | None) -> str:
    vendor = (info.vendor if info is not None else "") or ""
    if vendor:
        return vendor.lower()
    lowered = model.lower()
    if "claude" in lowered:
        return "anthropic"
    if "gemini" in lowered:
        return "google"
    return "openai"


def _fit(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def image_tokens(width: int, height: int, *, vendor: str = "openai") -> int:
    """Tokens one image of ``width`` x ``height`` costs, by the vendor's published rule.

    OpenAI (the default, also used for unknown vendors): fit in 2048x2048, then
    shortest side at most 768, then 85 + 170 per 512-pixel tile.  Anthropic:
    downscaled to a 1568 px long edge and about 1.15 megapixels, then
    width*height/750.  Google: 258 per image up to 384x384, else 258 per
    768-pixel tile.
    """
    if width <= 0 or height <= 0:
        return 0
    if vendor == "anthropic":
        scale = min(1.0, 1568 / max(width, height), math.sqrt(1_150_000 / (width * height)))
        w, h = _fit(width, height, scale)
        return math.ceil(w * h / 750)
    if vendor == "google":
        if width <= 384 and height <= 384:
            return 258
        return 258 * math.ceil(width / 768) * math.ceil(height / 768)
    w, h = _fit(width, height, min(1.0, 2048 / max(width, height)))
    w, h = _fit(w, h, min(1.0, 768 / min(w, h)))
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


@dataclass(frozen=True)
class Estimate:
    """Input tokens of one turn as it will be sent, and their catalog price.

    ``price`` is in the catalog's unit (the backend's published price per
    1,000 input tokens); ``None`` when the catalog has no price for the model.
    Output is not included: its length is not known before the answer.
    """

    text_tokens: int
    image_tokens: int
    history_tokens: int = 0
    price: float | None = None

    @property
    def input_tokens(self) -> int:
        return self.text_tokens + self.image_tokens + self.history_tokens

    def to_dict(self) -> dict[str, object]:
        return {
            "text_tokens": self.text_tokens,
            "image_tokens": self.image_tokens,
            "history_tokens": self.history_tokens,
            "price": self.price,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Estimate:
        price = data.get("price")
        return cls(
            text_tokens=int(data["text_tokens"]),  # type: ignore[call-overload]
            image_tokens=int(data["image_tokens"]),  # type: ignore[call-overload]
            history_tokens=int(data.get("history_tokens", 0)),  # type: ignore[call-overload]
            price=None if price is None else float(price),  # type: ignore[arg-type]
        )


def estimate_turn(
    prompt: str,
    image_sizes: Iterable[tuple[int, int]],
    model: str,
    info: ModelInfo | None,
    *,
    history_tokens: int = 0,
) -> Estimate:
    """Estimate one turn: the prompt, its images as sent, and any history sent along."""
    vendor = _vendor(model, info)
    t_text = text_tokens(prompt)
    t_images = sum(image_tokens(w, h, vendor=vendor) for w, h in image_sizes)
    price = None
    if info is not None and info.input_price is not None:
        price = (t_text + t_images + history_tokens) / 1000 * info.input_price
    return Estimate(t_text, t_images, history_tokens, price)


@dataclass(frozen=True)
class CostRow:
    """One answered (or attempted) turn."""

    turn: int
    model: str
    estimated_tokens: int | None
    estimated_price: float | None
    credits: float | None
    input_tokens: int | None
    output_tokens: int | None
    status: str  # "ok", "interrupted", "error", "running"


def _sum(values: Sequence[float | int | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _fmt(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}g}"


class CostReport:
    """Per-turn and total cost of a conversation; prints as a small table.

    ``credits`` and token counts are what the backend reported; the estimated
    columns are this package's estimate before sending (see ``estimate_turn``).
    """

    _HEADERS = ("turn", "model", "est. tokens", "est. price", "credits", "in tok", "out tok", "")

    def __init__(self, rows: Sequence[CostRow]) -> None:
        self.rows = list(rows)

    @property
    def credits(self) -> float | None:
        return _sum([r.credits for r in self.rows])

    @property
    def input_tokens(self) -> int | None:
        total = _sum([r.input_tokens for r in self.rows])
        return None if total is None else int(total)

    @property
    def output_tokens(self) -> int | None:
        total = _sum([r.output_tokens for r in self.rows])
        return None if total is None else int(total)

    @property
    def estimated_tokens(self) -> int | None:
        total = _sum([r.estimated_tokens for r in self.rows])
        return None if total is None else int(total)

    @property
    def estimated_price(self) -> float | None:
        return _sum([r.estimated_price for r in self.rows])

    def _cells(self) -> list[tuple[str, ...]]:
        cells: list[tuple[str, ...]] = [
            (
                str(r.turn),
                r.model,
                _fmt(r.estimated_tokens),
                _fmt(r.estimated_price),
                _fmt(r.credits),
                _fmt(r.input_tokens),
                _fmt(r.output_tokens),
                "" if r.status == "ok" else r.status,
            )
            for r in self.rows
        ]
        cells.append(
            (
                "total",
                "",
                _fmt(self.estimated_tokens),
                _fmt(self.estimated_price),
                _fmt(self.credits),
                _fmt(self.input_tokens),
                _fmt(self.output_tokens),
                "",
            )
        )
        return cells

    def __repr__(self) -> str:
        rows = [self._HEADERS, *self._cells()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self._HEADERS))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths).rstrip())
        return "\n".join(lines)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self._HEADERS)
        body = []
        cells = self._cells()
        for i, row in enumerate(cells):
            tag = "th" if i == len(cells) - 1 else "td"
            body.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in row) + "</tr>")
        return (
            '<table class="visionchat-cost"><thead><tr>'
            + head
            + "</tr></thead><tbody>"
            + "".join(body)
            + "</tbody></table>"
            + "<small>est. = estimated before sending (text ≈ chars/4, images at the size sent); "
            "price in the catalog's unit per 1K input tokens.</small>"
        )
