"""How a running batch shows its progress: a bar in a notebook, a line in a terminal.

Not tqdm: it would be a new dependency for one line of text, and its notebook
bar is an ipywidget, which a saved notebook shows as "widget not found".  Here
the notebook gets one HTML output that is replaced in place (a saved notebook
keeps the final counts), and at most a few updates a second reach the page
however fast answers arrive, because the view is polled by the waiting thread
rather than pushed per answer.
"""

from __future__ import annotations

import html
import math
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .batch import BatchProgress

__all__ = ["NotebookProgress", "TextProgress", "describe"]

_EVERY = 0.5  # seconds between two updates of a display


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    whole = round(seconds)
    minutes, sec = divmod(whole, 60)
    return f"{minutes}m{sec:02d}s" if minutes else f"{sec}s"


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


def describe(p: BatchProgress) -> str:
    """One line of counts, the same in every view."""
    if p.phase == "preparing":
        return f"preparing images {p.prepared}/{p.total}"
    parts = [f"{p.answered + p.cached}/{p.total} answered"]
    if p.cached:
        parts.append(f"{p.cached} from cache")
    parts.append(f"{p.failed + p.unreadable} failed")
    parts.append(f"{p.throttled} throttled")
    rate = p.per_minute
    if rate is not None:
        parts.append(f"{rate:.0f} images/min")
    if p.phase == "sending":
        parts.append(f"ETA {_duration(p.eta)}")
    else:
        parts.append(f"took {_duration(p.elapsed)}")
    if p.estimated_price:
        parts.append(f"estimated price {_number(p.estimated_price)}")
    if p.credits is not None:
        parts.append(f"{_number(p.credits)} credits")
    elif p.tokens is not None:
        parts.append(f"{_number(p.tokens)} tokens")
    if p.phase == "stopped":
        parts.append("interrupted")
    if p.stop_reason:
        parts.append(f"stopped: {p.stop_reason}")
    return " · ".join(parts)


class _Throttled:
    def __init__(self) -> None:
        self._last = 0.0
        self._shown: tuple[Any, ...] | None = None

    def _due(self, p: BatchProgress) -> bool:
        final = p.phase in ("done", "stopped")
        state = (p.phase, p.prepared, p.answered, p.cached, p.failed, p.unreadable, p.throttled)
        if state == self._shown and not final:
            return False
        now = time.monotonic()
        if not final and now - self._last < _EVERY:
            return False
        if final and state == self._shown:
            return False
        self._last, self._shown = now, state
        return True


class TextProgress(_Throttled):
    """A line rewritten in place on a terminal; a line every 10 s into a log file."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self._stream = stream
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._logged = 0.0

    def __call__(self, p: BatchProgress) -> None:
        if not self._due(p):
            return
        final = p.phase in ("done", "stopped")
        line = "visionchat batch: " + describe(p)
        if self._tty:
            self._stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        elif final or time.monotonic() - self._logged >= 10.0:
            self._logged = time.monotonic()
            self._stream.write(line + "\n")
        self._stream.flush()


class NotebookProgress(_Throttled):
    """One HTML output with a progress bar, updated in place."""

    def __init__(self) -> None:
        super().__init__()
        self._handle: Any = None

    def __call__(self, p: BatchProgress) -> None:
        if not self._due(p):
            return
        from IPython.display import HTML, display

        if p.phase == "preparing":
            done = p.prepared
        else:
            done = p.answered + p.cached + p.failed + p.unreadable
        label = html.escape(describe(p))
        body = HTML(  # type: ignore[no-untyped-call]
            '<div class="visionchat-batch" style="font-family: var(--jp-ui-font-family, '
            'sans-serif); font-size: 0.9em">'
            f'<progress value="{done}" max="{max(p.total, 1)}" style="width: 16em; '
            f'vertical-align: middle" aria-label="batch progress"></progress> '
            f"<span>{label}</span></div>"
        )
        if self._handle is None:
            self._handle = display(body, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(body)
