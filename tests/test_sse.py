"""The providers' event-stream parser, checked against httpx-sse on the same bytes."""

from __future__ import annotations

import itertools

import httpx
from httpx_sse import EventSource
from hypothesis import given
from hypothesis import strategies as st

from visionchat.providers._sse import SSEParser

# id and retry lines are left out: httpx-sse delivers an event that has only
# those, with empty data, while the parser (which ignores them) does not.
_VALUE = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
_LINE = st.one_of(
    st.builds("data: {}".format, _VALUE),
    st.builds("data:{}".format, st.sampled_from(["x", " two  spaces", "", '{"a": 1}'])),
    st.sampled_from(
        ["data", "event: content", "event:done", "event", ": a comment", ":", "foo: bar", "", ""]
    ),
)
_END = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    lines = draw(st.lists(st.tuples(_LINE, _END), max_size=30))
    text = "".join(line + end for line, end in lines) + draw(st.sampled_from(["", "data: cut"]))
    raw = text.encode()
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=8)))  # also inside a character
    return raw, cuts


def blocks(raw: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def reference(parts: list[bytes]) -> list[tuple[str, str]]:
    response = httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter(parts)
    )
    return [(e.event, e.data) for e in EventSource(response).iter_sse()]


def parse(parts: list[bytes]) -> list[tuple[str, str]]:
    parser = SSEParser()
    return [event for part in parts for event in parser.feed(part)]


@given(streams())
def test_same_events_as_httpx_sse_however_the_bytes_are_split(
    stream: tuple[bytes, list[int]],
) -> None:
    parts = blocks(*stream)
    assert parse(parts) == reference(parts)


def test_a_reply_as_the_services_send_it() -> None:
    raw = (
        ': keep-alive\n\ndata: {"choices": []}\n\n'
        "event: content\r\ndata: één\r\ndata: two\r\n\r\n"
        "event: done\ndata: {}\n\n"
        "data: [DONE]\n\ndata: never ended"
    ).encode()
    expected = [
        ("message", '{"choices": []}'),
        ("content", "één\ntwo"),
        ("done", "{}"),
        ("message", "[DONE]"),
    ]
    assert parse([raw]) == expected
    # one byte at a time: CRLF and the two-byte characters split too
    assert parse([raw[i : i + 1] for i in range(len(raw))]) == expected
    assert reference([raw]) == expected


def test_an_event_ending_in_cr_is_delivered_without_waiting_for_the_next_block() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\r\n\r") == [("message", "x")]
    assert parser.feed(b"\ndata: y\r\r") == [("message", "y")]  # that LF paired the CR


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert parse([b"data: caf\xc3", b"\xa9 \xff!\n\n"]) == [("message", "caf\u00e9 \ufffd!")]
