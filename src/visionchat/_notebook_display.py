"""The answer streaming into a notebook cell, as ordinary Markdown output.

A Jupyter display update re-sends the whole output, so re-rendering the full
answer on every chunk costs O(n²) bytes and front-end work over a reply.  Two
measures keep the work per chunk bounded instead:

* The answer is shown as a series of outputs, each a group of whole
  paragraphs.  When a blank line outside a code fence arrives and the current
  output holds at least ``segment_chars`` characters, that output is settled
  and never sent again; only the last one is ever updated.
* The last output is re-rendered only when it grew by ``growth`` since its
  previous rendering and ``min_interval`` has passed, or when text has waited
  ``stale_after`` seconds.  So bytes sent per segment are a small multiple of
  the segment, and in total a small multiple of the reply.

What stays behind is plain ``text/markdown`` (plus ``text/plain``) outputs, as
if the cell had displayed Markdown itself.  Imported only inside IPython.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .conversation import Reply

__all__ = ["LiveAnswer", "display_reply", "in_kernel"]

Bundle = dict[str, str]


def in_kernel() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython, not a script)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _execution_count() -> int | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    count = getattr(shell, "execution_count", None)
    return count if isinstance(count, int) else None


@contextmanager
def _interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C (kernel interrupt) until the block is done, then deliver it.

    Publishing an output and remembering its handle must happen together: an
    interrupt landing in between leaves an output on screen that this object does
    not know, and settling the partial answer would then show it a second time.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals only reach the main thread
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None or previous is signal.SIG_IGN:
        yield  # a handler set outside Python cannot be restored; an ignored one needs nothing
        return
    held: list[Any] = []
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    except (ValueError, OSError):  # not allowed here (an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            if callable(previous):
                previous(signal.SIGINT, held[0])
            else:  # SIG_DFL: what Python does by default
                raise KeyboardInterrupt


class Publisher(Protocol):
    """Where outputs go: IPython's display system, or a recorder in tests."""

    def new(self, bundle: Bundle) -> Any: ...

    def update(self, handle: Any, bundle: Bundle) -> None: ...


class IPythonPublisher:
    def new(self, bundle: Bundle) -> Any:
        from IPython.display import display

        return display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]

    def update(self, handle: Any, bundle: Bundle) -> None:
        handle.update(bundle, raw=True)


class LiveAnswer:
    """Feeds text deltas into bounded-size Markdown outputs; see the module docstring."""

    def __init__(
        self,
        publisher: Publisher | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = 0.05,
        stale_after: float = 0.3,
        growth: float = 1.3,
        segment_chars: int = 400,
    ) -> None:
        self._pub = publisher if publisher is not None else IPythonPublisher()
        self._clock = clock
        self._min_interval = min_interval
        self._stale_after = stale_after
        self._growth = growth
        self._segment_chars = segment_chars
        self._tail: list[str] = []  # text of the segment still growing
        self._tail_len = 0
        self._handle: Any = None  # its output, once shown
        self._rendered_len = 0  # how much of it the output shows
        self._last_render = float("-inf")
        # line scanner state, for paragraph boundaries outside code fences
        self._line_head = ""
        self._line_blank = True
        self._fence: tuple[str, int] | None = None
        self.bytes_sent = 0
        self.updates = 0

    # -- feeding ----------------------------------------------------------------

    def feed(self, delta: str) -> None:
        start = 0
        while True:
            nl = delta.find("\n", start)
            if nl < 0:
                self._add(delta[start:])
                break
            self._add(delta[start : nl + 1])
            if self._end_line() and self._tail_len >= self._segment_chars:
                self._settle_segment()
            start = nl + 1
        self.tick()

    def _add(self, piece: str) -> None:
        if not piece:
            return
        self._tail.append(piece)
        self._tail_len += len(piece)
        if len(self._line_head) < 64:
            self._line_head += piece[: 64 - len(self._line_head)]
        if self._line_blank and piece.strip():
            self._line_blank = False

    def _end_line(self) -> bool:
        """Close the current line; True when it is a blank line outside a fence."""
        head, blank = self._line_head, self._line_blank
        self._line_head, self._line_blank = "", True
        stripped = head.lstrip(" ")
        if len(head) - len(stripped) <= 3 and stripped[:3] in ("```", "~~~"):
            char = stripped[0]
            run = len(stripped) - len(stripped.lstrip(char))
            if self._fence is None:
                self._fence = (char, run)
            elif char == self._fence[0] and run >= self._fence[1] and not stripped[run:].strip():
                self._fence = None
            return False
        return blank and self._fence is None

    # -- rendering ------------------------------------------------------------

    def poll_timeout(self) -> float | None:
        """Seconds until a pending update falls due by time alone (None: nothing pending)."""
        if self._tail_len <= self._rendered_len:
            return None
        due = self._last_render + max(self._min_interval, self._stale_after)
        if self._tail_len >= self._growth * self._rendered_len:
            due = self._last_render + self._min_interval
        return max(0.0, due - self._clock())

    def tick(self) -> None:
        if self._tail_len <= self._rendered_len:
            return
        # a microsecond of slack: poll_timeout's deadline must count as reached
        elapsed = self._clock() - self._last_render + 1e-6
        if elapsed < self._min_interval:
            return
        if self._tail_len >= self._growth * self._rendered_len or elapsed >= self._stale_after:
            self._render({"text/markdown": "".join(self._tail)})

    def _render(self, bundle: Bundle) -> None:
        with _interrupt_after():
            if self._handle is None:
                self._handle = self._pub.new(bundle)
            else:
                self._pub.update(self._handle, bundle)
        self._rendered_len = self._tail_len
        self._last_render = self._clock()
        self.bytes_sent += sum(len(v) for v in bundle.values())
        self.updates += 1

    def _settle_segment(self) -> None:
        text = "".join(self._tail)
        if text.strip():
            self._render({"text/markdown": text, "text/plain": text})
        self._tail, self._tail_len = [], 0
        self._handle, self._rendered_len = None, 0

    # -- the end ----------------------------------------------------------------

    def finish(self, reply: Reply) -> Reply:
        """Settle the output; the returned reply knows it was shown in this cell."""
        self._settle_segment()
        notes = []
        if reply.interrupted:
            notes.append("*— stopped: the answer above is partial.*")
        notes.extend(f"*{n}*" for n in reply.notices)
        self._note(notes)
        return dataclasses.replace(reply, _shown_in=_execution_count())

    def abort(self, partial: Reply | None, error: BaseException) -> None:
        """Settle what arrived when the turn failed or the user stopped it."""
        self._settle_segment()
        has_text = partial is not None and bool(partial.text)
        if isinstance(error, KeyboardInterrupt):
            self._note(
                [
                    "*— stopped"
                    + (
                        ": the partial answer above is kept in `conv.last_reply`"
                        if has_text
                        else ""
                    )
                    + "; `conv.retry()` asks again.*"
                ]
            )
        elif has_text:
            self._note(["*— the answer broke off; the partial text above is kept.*"])

    def _note(self, notes: list[str]) -> None:
        if notes:
            text = "\n\n".join(notes)
            self._pub.new({"text/markdown": text, "text/plain": text})


def display_reply(reply: Reply) -> None:
    """Show a reply, unless ``ask`` already streamed it into this very cell."""
    if reply._shown_in is not None and reply._shown_in == _execution_count():
        return
    from IPython.display import display

    bundle = {"text/markdown": reply._repr_markdown_(), "text/plain": reply.text}
    display(bundle, raw=True)  # type: ignore[no-untyped-call]
