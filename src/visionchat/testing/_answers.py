"""The emulator's answers: deterministic, and built from the images it received.

A test that checks the answer names the right size and colour knows the image
really arrived, decoded, at the server: a client that dropped or garbled it
cannot pass.  The text includes multi-byte characters (×, “ ”) on purpose, so
clients of the legacy raw stream must decode split characters correctly.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from typing import Any

from .._image_stats import measure
from .._schema_fill import fill
from ..schema import extract_requested_schema

__all__ = ["compose", "credits_for", "structured", "tokens"]


def describe(data: bytes) -> str:
    try:
        s = measure(data)
    except Exception:
        return "an image I could not decode"
    main = s.colours[0]
    return (
        f"{s.width}×{s.height}, mostly {main[0]} ({main[1]}), {s.brightness_word}, "
        f"looks like a {s.kind}"
    )


def structured(schema: dict[str, Any], images: Sequence[bytes], *, fenced: bool) -> str:
    """A JSON answer of ``schema``'s shape from the measurements (fenced as models often do)."""
    stats = []
    for data in images[:1]:
        with contextlib.suppress(Exception):
            stats.append(measure(data, marks=True))
    text = json.dumps(fill(schema, stats), ensure_ascii=False)
    return f"```json\n{text}\n```" if fenced else text


def compose(
    prompt: str,
    images: Sequence[bytes],
    *,
    model: str,
    turn: int = 1,
    earlier: Sequence[str] = (),
) -> str:
    wanted = extract_requested_schema(prompt)
    if wanted is not None:
        return structured(wanted, images, fenced=True)
    parts = [f"[{model} via the visionchat emulator]"]
    if images:
        parts.append(f"I received {len(images)} image{'s' if len(images) != 1 else ''}.")
        for i, data in enumerate(images, 1):
            parts.append(f"Image {i} is {describe(data)}.")
    else:
        parts.append("I received no image with this message.")
    if turn > 1 and earlier:
        last = earlier[-1] if len(earlier[-1]) <= 60 else earlier[-1][:57] + "..."
        parts.append(f"This is message {turn} in this conversation; earlier you asked “{last}”.")
    parts.append(f"You asked: “{prompt}”.")
    return " ".join(parts)


def tokens(text: str) -> list[str]:
    """Word-sized chunks, whitespace kept, so joining them gives the text back."""
    return re.findall(r"\S+\s*|\s+", text) or [text]


def credits_for(prompt: str, images: Sequence[bytes], answer: str) -> tuple[int, int]:
    """(input credits, output credits): deterministic, grows with what was sent."""
    pixels = 0
    for data in images:
        try:
            s = measure(data)
            pixels += s.width * s.height
        except Exception:
            pass
    return 10 + len(prompt) // 8 + pixels // 20_000, 1 + len(answer) // 16
