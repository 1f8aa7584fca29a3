"""Server-sent events, parsed from the byte blocks of a streamed response.

Why not httpx-sse: it hands each event through two more async generators
(lines, then events) and builds an event object per event.  A reply streams
one event per chunk, thousands of them, and that layering was a sixth of the
client's CPU time per chunk (``benchmarks/bench_client.py``).  Here one
synchronous call turns a block of bytes into the events it completes, so the
provider's own loop is the only async step per block.  It takes bytes, not
httpx's decoded text, because an event stream is UTF-8 whatever the headers
say, and ``aiter_text`` would be one more async generator per chunk.

The parsing follows the WHATWG event-stream rules the providers rely on:
UTF-8 (a character may straddle two blocks; invalid bytes become U+FFFD),
lines end in CR, LF or CRLF (a CRLF may be split across blocks; a CR ends
its line at once), a line starting with
``:`` is a comment, one space after the colon is dropped, several ``data``
lines join with LF, and a blank line ends an event.  ``id`` and ``retry`` are
ignored: they serve to resume a broken stream, and a billed turn is never
resumed.  As in httpx-sse, an event with an ``event`` field but no data is
still delivered (1min.ai ends with one), and text after the last blank line
is discarded when the stream ends.
"""

from __future__ import annotations

import codecs

__all__ = ["SSEParser"]


class SSEParser:
    """Feed it byte blocks in order; it returns ``(event, data)`` per complete event."""

    __slots__ = ("_data", "_decode", "_event", "_skip_lf", "_tail")

    def __init__(self) -> None:
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        self._tail = ""  # an unfinished line
        self._skip_lf = False  # the last block ended in CR: an LF first in the next is its pair
        self._event = ""
        self._data: list[str] = []

    def feed(self, block: bytes) -> list[tuple[str, str]]:
        text = self._decode(block)
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        if self._tail:
            text = self._tail + text
        if "\r" in text:
            self._skip_lf = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        split = text.split("\n")
        self._tail = split.pop()
        out: list[tuple[str, str]] = []
        data = self._data
        for line in split:
            if line.startswith("data: "):  # nearly every line of a reply
                data.append(line[6:])
            elif not line:
                if data or self._event:
                    joined = data[0] if len(data) == 1 else "\n".join(data)
                    out.append((self._event or "message", joined))
                    data.clear()
                    self._event = ""
            else:
                name, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if name == "data":
                    data.append(value)
                elif name == "event":
                    self._event = value
        return out
