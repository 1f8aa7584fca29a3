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
_LINE = st.one_of(
    st.builds("data: {}".format, st.text(st.characters(blacklist_characters="\r\n"), max_size=12)),
    st.builds("data:{}".format, st.sampled_from(["x", " two  spaces", "", '{"a": 1}'])),
    st.sampled_from(
        ["data", "event: content", "event:done", "event", ": a comment", ":", "foo: bar", "", ""]
    ),
)
_END = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def streams(draw: st.DrawFn) -> tuple[str, list[int]]:
    lines = draw(st.lists(st.tuples(_LINE, _END), max_size=30))
    text = "".join(line + end for line, end in lines) + draw(st.sampled_from(["", "data: cut"]))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    return text, cuts


def blocks(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def reference(parts: list[str]) -> list[tuple[str, str]]:
    response = httpx.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content=iter([p.encode() for p in parts]),
    )
    return [(e.event, e.data) for e in EventSource(response).iter_sse()]


def parse(parts: list[str]) -> list[tuple[str, str]]:
    parser = SSEParser()
    return [event for part in parts for event in parser.feed(part)]


@given(streams())
def test_same_events_as_httpx_sse_however_the_text_is_split(stream: tuple[str, list[int]]) -> None:
    parts = blocks(*stream)
    assert parse(parts) == reference(parts)


def test_a_reply_as_the_services_send_it() -> None:
    text = (
        ': keep-alive\n\ndata: {"choices": []}\n\n'
        "event: content\r\ndata: one\r\ndata: two\r\n\r\n"
        "event: done\ndata: {}\n\n"
        "data: [DONE]\n\ndata: never ended"
    )
    expected = [
        ("message", '{"choices": []}'),
        ("content", "one\ntwo"),
        ("done", "{}"),
        ("message", "[DONE]"),
    ]
    assert parse([text]) == expected
    assert parse(list(text)) == expected  # one character at a time: CRLF split too
    assert reference([text]) == expected
