"""ChatWidget with a captured comm: what the kernel sends the page, and what it does
with what the page sends.  The browser tests check the page side for real."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import threading
from typing import Any

import pytest
from PIL import Image

from image_server import serving
from test_conversation_fakes import FakeProvider, make_image
from visionchat.conversation import Conversation
from visionchat.errors import APIError, NotVisionCapableError, ServerError
from visionchat.widget import ChatWidget, chat


class Page:
    """Stands in for the browser: records custom messages the widget sends."""

    def __init__(self, widget: ChatWidget) -> None:
        self.sent: list[dict[str, Any]] = []
        self.buffers: list[list[bytes]] = []
        self.widget = widget
        self.lock = threading.Lock()
        widget.send = self._record  # type: ignore[method-assign]

    def _record(self, content: dict[str, Any], buffers: Any = None) -> None:
        with self.lock:
            self.sent.append(content)
            self.buffers.append([bytes(b) for b in buffers or []])

    def do(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        self.widget._on_msg(self.widget, content, buffers or [])

    def kinds(self) -> list[str]:
        return [m["type"] for m in self.sent]

    def text_of(self, message_id: str) -> str:
        parts = [m["text"] for m in self.sent if m["type"] == "delta" and m["id"] == message_id]
        return "".join(parts)


def make(**kw: Any) -> tuple[ChatWidget, Page, FakeProvider]:
    fake = FakeProvider(**kw)
    w = ChatWidget(Conversation(model="gpt-4o", provider=fake))
    return w, Page(w), fake


def wait_idle(w: ChatWidget) -> None:
    for f in list(w._futures):
        f.result(timeout=20)


def png_bytes(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, format="PNG")
    return buf.getvalue()


def test_a_turn_typed_in_the_page_lands_in_the_conversation() -> None:
    w, page, _ = make(words=30)
    page.do({"type": "attach", "name": "red.png", "mime": "image/png"}, [png_bytes((255, 0, 0))])
    assert len(w.pending) == 1 and w.pending[0] in w.thumbnails
    page.do({"type": "submit", "text": "what is this?"})
    wait_idle(w)
    conv = w.conversation
    user, answer = conv.messages
    assert user.text == "what is this?" and len(user.images) == 1
    assert answer.text.startswith("echo what is this? | images=1")
    # streamed: turn-start, then deltas carrying only new text, then turn-end
    kinds = page.kinds()
    assert kinds[0] == "turn-start" and kinds[-1] == "turn-end"
    assert page.text_of(answer.id) == answer.text
    assert w.pending == []
    assert [m["id"] for m in w.messages] == [user.id, answer.id]
    assert w.messages[0]["images"] == [user.images[0].sha256]
    assert not w.busy


def test_deltas_are_coalesced_not_one_message_per_chunk() -> None:
    w, page, _ = make(words=400)
    page.do({"type": "submit", "text": "long"})
    wait_idle(w)
    deltas = [m for m in page.sent if m["type"] == "delta"]
    answer = w.conversation.messages[-1]
    assert page.text_of(answer.id) == answer.text
    assert len(deltas) < 401  # 401 chunks arrived back to back: several share a message


def test_a_turn_asked_from_python_streams_into_every_view() -> None:
    fake = FakeProvider(words=5)
    conv = Conversation(model="gpt-4o", provider=fake)
    views = [ChatWidget(conv), ChatWidget(conv)]
    pages = [Page(v) for v in views]
    reply = conv.ask("from python", show=False)
    for v, p in zip(views, pages, strict=True):
        assert p.text_of(reply.message_id) == reply.text
        assert v.messages[-1]["text"] == reply.text


def test_stop_keeps_the_partial_answer() -> None:
    w, page, fake = make(words=50)
    fake.gate = threading.Event()  # holds the stream after its first chunk
    page.do({"type": "submit", "text": "slow"})
    fut = w._futures[-1]
    for _ in range(200):
        if any(m["type"] == "delta" for m in page.sent):
            break
        threading.Event().wait(0.02)
    page.do({"type": "cancel"})
    reply = fut.result(timeout=20)
    assert reply.interrupted
    answer = w.conversation.messages[-1]
    assert answer.interrupted and answer.text.startswith("echo slow")
    assert w.messages[-1]["interrupted"] is True
    assert w.messages[-1]["text"] == answer.text


def test_a_failed_turn_is_shown_and_retry_from_the_page_answers_it() -> None:
    w, page, fake = make(words=6)
    fake.fail_after = 2
    fake.fail_with = ServerError("backend fell over; retry", retryable=True)
    page.do({"type": "submit", "text": "flaky"})
    with pytest.raises(APIError):
        w._futures[-1].result(timeout=20)
    assert "turn-error" in page.kinds()
    assert w.messages[-1]["error"] and w.messages[-1]["retryable"]
    fake.fail_after = None
    page.do({"type": "retry"})
    wait_idle(w)
    assert w.conversation.messages[-1].error is None
    assert w.conversation.messages[-1].text.startswith("echo flaky")


def test_removing_an_attachment_before_sending() -> None:
    w, page, fake = make()
    page.do({"type": "attach", "name": "a.png", "mime": "image/png"}, [png_bytes((0, 255, 0))])
    page.do({"type": "attach", "name": "b.png", "mime": "image/png"}, [png_bytes((0, 0, 255))])
    assert len(w.pending) == 2
    page.do({"type": "remove-attachment", "sha": w.pending[0]})
    assert len(w.pending) == 1
    page.do({"type": "submit", "text": "one image"})
    wait_idle(w)
    assert len(fake.requests[-1].images) == 1


def test_bad_input_from_the_page_becomes_an_inline_error() -> None:
    w, page, _ = make()
    page.do({"type": "attach", "name": "notes.png", "mime": "image/png"}, [b"this is not a png"])
    assert w.error and w.pending == []
    w2, page2, _ = make(vision=False)
    w2.attach(make_image())
    page2.do({"type": "submit", "text": "see?"})
    for f in w2._futures:
        with pytest.raises(NotVisionCapableError):
            f.result(timeout=20)
    assert w2.error or w2.messages[-1]["error"]


def test_state_never_carries_the_api_key() -> None:
    fake = FakeProvider()
    conv = Conversation(model="gpt-4o", provider=fake, api_key="sk-THISMUSTNEVERLEAK-1234567890")
    w = ChatWidget(conv, make_image())
    page = Page(w)
    conv.ask("hi", show=False)
    state = w.get_state()
    history = gzip.decompress(w.history).decode() + gzip.decompress(w.history_recent).decode()
    assert "hi" in history  # the settled turn is there, readable once decompressed
    text = json.dumps({k: v for k, v in state.items() if k != "thumbnails"}, default=str)
    text += history
    assert "THISMUSTNEVERLEAK" not in text
    assert all("THISMUSTNEVERLEAK" not in json.dumps(m) for m in page.sent)
    assert "THISMUSTNEVERLEAK" not in repr(w)


def test_chat_opens_a_widget_with_images_attached() -> None:
    conv = Conversation(model="gpt-4o", provider=FakeProvider())
    w = chat(make_image((1, 2, 3)), conversation=conv)
    assert w.conversation is conv and len(w.pending) == 1


def test_the_viewer_gets_the_image_as_sent_only_when_asked() -> None:
    w, page, _ = make(words=3)
    big = make_image((10, 120, 200), (1200, 900))
    w.attach(big)
    sha = w.pending[0]
    # The page holds only the thumbnail until someone opens it.
    assert len(w.thumbnails[sha]["data"]) < len(big.data)
    assert not any(m["type"] == "image" for m in page.sent)
    page.do({"type": "view-image", "sha": sha})  # still an attachment
    msg, bufs = page.sent[-1], page.buffers[-1]
    assert msg == {"type": "image", "sha": sha, "mime": big.mime, "width": 1200, "height": 900}
    assert bufs == [big.data]
    page.do({"type": "submit", "text": "look"})
    wait_idle(w)
    page.do({"type": "view-image", "sha": sha})  # now inside a sent message
    assert page.sent[-1]["type"] == "image" and page.buffers[-1] == [big.data]
    page.do({"type": "view-image", "sha": "0" * 64})
    assert page.sent[-1] == {"type": "image-missing", "sha": "0" * 64}
    assert w.error == ""


def test_a_file_from_the_page_arrives_in_parts_with_progress() -> None:
    w, page, _ = make(words=3)
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (0, 128, 0)).save(buf, format="BMP")  # 180 KB
    data = buf.getvalue()
    pieces = [data[i : i + 50_000] for i in range(0, len(data), 50_000)]
    for i, piece in enumerate(pieces):
        assert w.pending == []  # nothing attached before the last part
        msg = {"type": "attach", "name": "g.bmp", "mime": "image/bmp", "upload": "u1"}
        page.do({**msg, "part": i, "parts": len(pieces)}, [piece])
    assert len(w.pending) == 1 and w.thumbnails[w.pending[0]]["width"] == 300
    progress = [m for m in page.sent if m["type"] == "attach-progress"]
    assert [(m["received"], m["total"]) for m in progress] == [
        (i + 1, len(pieces)) for i in range(len(pieces))
    ]
    assert w.error == "" and len(w._uploads) == 0


def test_a_garbled_or_oversized_upload_is_refused_with_a_clear_error() -> None:
    w, page, _ = make(words=3)
    msg = {"type": "attach", "name": "g.png", "mime": "image/png", "upload": "u2", "parts": 3}
    page.do({**msg, "part": 0}, [b"a" * 10])
    page.do({**msg, "part": 2}, [b"c" * 10])  # part 1 never came
    assert "g.png did not arrive whole" in w.error and "attach it again" in w.error
    assert w.pending == [] and len(w._uploads) == 0
    page.do({**msg, "upload": "u3", "part": 0, "parts": 10_000}, [b"x"])
    assert "too large to attach" in w.error and "visionchat.chat('path/to/file')" in w.error
    page.do({"type": "attach", "name": "notes.png", "mime": "image/png"}, [b"not an image"])
    assert w.error.startswith("notes.png: ") and "not an image" in w.error


def test_previews_show_the_size_the_chosen_model_will_receive() -> None:
    class CatalogLimits(FakeProvider):
        def model_info(self, model: str) -> None:
            return None  # so the catalog's per-vendor limits apply

    fake = CatalogLimits(words=3)
    conv = Conversation(model="gpt-4o", provider=fake)
    w = ChatWidget(conv, make_image((0, 0, 200), (3000, 1000)), model="gemini-1.5-pro")
    assert w.thumbnails[w.pending[0]]["width"] == 3000  # Gemini takes 3072
    w.model = "claude-3-5-sonnet-20240620"  # takes 1568: the preview shrinks
    (sha,) = w.pending
    assert (w.thumbnails[sha]["width"], w.thumbnails[sha]["height"]) == (1568, 523)
    page = Page(w)
    page.do({"type": "submit", "text": "what is it?"})
    wait_idle(w)
    sent = fake.requests[-1].images[0]
    assert (sent.width, sent.height, sent.sha256) == (1568, 523, sha)


def test_an_upload_abandoned_mid_way_is_dropped_later() -> None:
    from visionchat._uploads import STALE_SECONDS, Uploads

    now = [0.0]
    uploads = Uploads(clock=lambda: now[0])
    assert uploads.receive("a", "a.png", 0, 3, b"1") is None  # its page went away
    now[0] = STALE_SECONDS / 2
    assert uploads.receive("b", "b.png", 0, 2, b"x") is None
    assert len(uploads) == 2
    now[0] = STALE_SECONDS + 1
    assert uploads.receive("b", "b.png", 1, 2, b"y") == b"xy"
    assert len(uploads) == 0  # "a" went stale; "b" is done


def test_an_image_dragged_from_a_web_page_is_fetched_by_the_kernel() -> None:
    with serving(png_bytes((200, 100, 0))) as base:
        w, page, _ = make(words=3)
        page.do({"type": "attach-url", "url": f"{base}/a.png"})
        assert len(w.pending) == 1 and w.thumbnails[w.pending[0]]["width"] == 40
        assert page.sent[-1]["type"] == "attach-progress"  # the page's "Fetching…" ends
        page.do({"type": "attach-url", "url": "/etc/hostname"})  # never a local file
        assert "Only http(s)" in w.error and len(w.pending) == 1


def test_a_long_conversation_is_not_re_sent_whole_each_turn() -> None:
    w, _, _ = make(words=40)
    sizes: list[tuple[int, int]] = []
    for i in range(40):
        w.conversation.ask(f"question {i}", show=False)
        sizes.append((len(w.history), len(w.history_recent)))

    def messages(blob: bytes) -> list[dict[str, Any]]:
        return json.loads(gzip.decompress(blob)) if blob else []

    both = messages(w.history) + messages(w.history_recent)
    assert both == w.messages and len(both) == 80  # together: every settled message, in order
    assert len(messages(w.history_recent)) <= 24
    # the earlier part changed only when recent messages moved into it
    changes = sum(1 for a, b in itertools.pairwise(sizes) if a[0] != b[0])
    assert 1 <= changes <= 80 // 16 + 1
    # an undo reaching into the earlier part rewrites it, and the two still add up
    for _ in range(15):
        w.conversation.undo()
    w._sync_messages()
    both = messages(w.history) + messages(w.history_recent)
    assert both == w.messages and len(both) == 50
