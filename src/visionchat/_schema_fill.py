"""How the demo models (offline, and the emulator's) fill a requested JSON object.

They cannot read or reason, but they measure: size, colours, brightness,
whether a chart has a title and axis labels, how many marks it draws.  A field
whose name asks for one of those gets the measurement; any other field gets a
plain value of its type, so the answer always has the requested shape.  A
schema that no value can satisfy (a minimum above its maximum, say) still gets
an answer, which then fails validation, as a real model's would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._image_stats import ImageStats

__all__ = ["fill"]


def _words(name: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    return {w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w}


def _labels(s: ImageStats | None) -> tuple[bool, bool, bool]:
    if s is None or s.labels is None:
        return (False, False, False)
    return s.labels


def _bool(words: set[str], s: ImageStats | None) -> bool:
    title, xlabel, ylabel = _labels(s)
    axis = bool(words & {"axis", "axes", "label", "labels", "labelled", "labeled"})
    if "title" in words or "titled" in words:
        return title
    if axis and "x" in words:
        return xlabel
    if axis and "y" in words:
        return ylabel
    if axis:
        return xlabel and ylabel
    if s is None:
        return False
    if words & {"chart", "plot", "graph", "diagram"}:
        return s.is_chart
    if words & {"photo", "photograph"}:
        return s.kind == "photograph"
    if "transparent" in words or "transparency" in words:
        return s.transparent
    if "dark" in words:
        return s.brightness < 0.35
    if words & {"bright", "light"}:
        return s.brightness > 0.65
    return False


def _number(words: set[str], spec: Mapping[str, Any], s: ImageStats | None) -> float:
    low, high = spec.get("minimum"), spec.get("maximum")
    if s is not None and "width" in words:
        value: float = s.width
    elif s is not None and "height" in words:
        value = s.height
    elif s is not None and words & {"colour", "colours", "color", "colors"}:
        value = s.distinct_colours
    elif s is not None and words & {"marks", "bars", "points", "lines", "count", "number"}:
        value = len(s.marks or ())
    elif s is not None and words & {"brightness", "bright", "lightness"}:
        value = round(s.brightness, 2)
    elif words & {"score", "grade", "rating", "quality"}:
        share = sum(_labels(s)) / 3  # how completely the chart is labelled
        bottom = float(low) if isinstance(low, int | float) else 0.0
        top = float(high) if isinstance(high, int | float) else 10.0
        value = bottom + (top - bottom) * share
    else:
        value = low if isinstance(low, int | float) else 0
    lo = float(low) if isinstance(low, int | float) else None
    hi = float(high) if isinstance(high, int | float) else None
    if lo is None or hi is None or lo <= hi:  # an impossible range stays impossible
        if lo is not None:
            value = max(value, lo)
        if hi is not None:
            value = min(value, hi)
    return value


def _string(words: set[str], s: ImageStats | None) -> str:
    if s is None:
        return "no image"
    if words & {"colour", "color", "colours", "colors"}:
        return s.colours[0][0]
    if words & {"kind", "type", "category", "class"}:
        return s.kind
    if words & {"brightness", "bright", "lightness"}:
        return s.brightness_word
    if "orientation" in words:
        return s.orientation
    if "size" in words or "dimensions" in words:
        return f"{s.width}×{s.height}"
    if "title" in words:
        return "a title (the demo model cannot read text)" if _labels(s)[0] else ""
    return (
        f"{s.width}×{s.height} {s.kind}, mostly {s.colours[0][0]}, {s.brightness_word} "
        "(measured by the demo model)"
    )


def _choose(options: Sequence[Any], words: set[str], s: ImageStats | None) -> Any:
    """The enum option the measurements point at, else the first."""
    if s is not None:
        facts = " ".join(
            [
                s.kind,
                s.colours[0][0],
                s.brightness_word,
                s.orientation,
                "chart" if s.is_chart else "",
            ]
        ).lower()
        for option in options:
            if isinstance(option, str) and option and option.lower() in facts:
                return option
        if any(isinstance(o, bool) for o in options):
            return _bool(words, s)
    return options[0]


def _value(name: str, spec: Mapping[str, Any], s: ImageStats | None) -> Any:
    words = _words(name)
    if spec.get("enum"):
        return _choose(list(spec["enum"]), words, s)
    for key in ("anyOf", "oneOf"):
        if isinstance(spec.get(key), list):
            options = [o for o in spec[key] if isinstance(o, Mapping) and o.get("type") != "null"]
            if options:
                return _value(name, options[0], s)
    kind = spec.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "boolean":
        return _bool(words, s)
    if kind in ("integer", "number"):
        value = _number(words, spec, s)
        return round(value) if kind == "integer" else float(value)
    if kind == "array":
        if s is not None and words & {"colours", "colors", "colour", "color"}:
            return [c[0] for c in s.colours[:3]]
        return []
    if kind == "object":
        return fill(spec, [s] if s is not None else [])
    return _string(words, s)


def fill(schema: Mapping[str, Any], stats: Sequence[ImageStats]) -> dict[str, Any]:
    """An object of ``schema``'s shape from the first image's measurements."""
    s = stats[0] if stats else None
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return {}
    return {
        name: _value(name, spec if isinstance(spec, Mapping) else {}, s)
        for name, spec in props.items()
    }
