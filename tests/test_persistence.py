"""Saving, loading and exporting conversations: exact, atomic, safe."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_conversation_fakes import FakeProvider, make_image
from visionchat.conversation import Conversation, Message
from visionchat.errors import ConversationFileError, ServerError
from visionchat.persistence import FORMAT, VERSION, load_conversation

KEY = "sk-test-key-do-not-write-123456"
RED = make_image((220, 20, 20))
BLUE = make_image((20, 20, 220), (80, 60))


def rich_conversation(provider: FakeProvider | None = None) -> Conversation:
    """Successful, failed and interrupted turns, several images, session state."""
    fake = provider or FakeProvider(keeps_history=True)
    conv = Conversation(model="gpt-4o", provider=fake, api_key=KEY)
    conv.ask("first look", RED, BLUE)
    conv.ask('und jetzt? ✓ «quotes» "json" \\ back\nslash', model="claude-x")
    fake.fail_after = 2
    fake.fail_with = ServerError("The server failed (503); try again.", status=503)
    with pytest.raises(ServerError):
        conv.ask("fails", RED)
    fake.fail_after = None
    return conv


def same_messages(a: list[Message], b: list[Message]) -> None:
    assert a == b
    for x, y in zip(a, b, strict=True):
        assert [i.data for i in x.images] == [i.data for i in y.images]
        assert [i.thumbnail for i in x.images] == [i.thumbnail for i in y.images]
        for i, j in zip(x.images, y.images, strict=True):
            assert (i.mime, i.width, i.height, i.source, i.original_size, i.resized) == (
                j.mime,
                j.width,
                j.height,
                j.source,
                j.original_size,
                j.resized,
            )


def test_round_trip_is_exact(tmp_path: Path) -> None:
    conv = rich_conversation()
    path = conv.save(tmp_path / "chat.json")
    loaded = Conversation.load(path, provider=FakeProvider(keeps_history=True))
    same_messages(conv.messages, loaded.messages)
    assert loaded.model == conv.model
    assert loaded.id == conv.id and loaded.created == conv.created
    assert loaded.messages[-1].error and loaded.messages[-1].retryable
    assert loaded.messages[1].estimate is not None
    assert loaded.messages[1].usage == conv.messages[1].usage
    # provider "fake" was saved; a provider of the same name keeps the session
    assert loaded.session == conv.session == {"conversation_id": "conv-1"}
    # saving the loaded copy gives the same file
    again = loaded.save(tmp_path / "again.json")
    assert json.loads(again.read_text()) == json.loads(path.read_text())


def test_images_are_stored_once_and_the_key_never(tmp_path: Path) -> None:
    conv = rich_conversation()
    path = conv.save(tmp_path / "chat.json")
    raw = path.read_bytes()
    assert KEY.encode() not in raw
    doc = json.loads(raw)
    assert doc["format"] == FORMAT and doc["version"] == VERSION
    assert sorted(doc["images"]) == sorted({RED.sha256, BLUE.sha256})
    assert doc["provider"] == "fake"


def test_a_session_holding_the_key_is_scrubbed(tmp_path: Path) -> None:
    fake = FakeProvider(keeps_history=True)
    conv = Conversation(provider=fake, api_key=KEY)
    conv.ask("hi")
    conv._session["oops"] = f"Bearer {KEY}"  # a buggy provider
    path = conv.save(tmp_path / "c.json")
    assert KEY not in path.read_text()
    assert load_conversation(path).session == {"conversation_id": "conv-1", "oops": None}


def test_a_loaded_conversation_continues_with_its_images(tmp_path: Path) -> None:
    conv = rich_conversation(FakeProvider())
    path = conv.save(tmp_path / "chat.json")
    fake = FakeProvider()
    loaded = Conversation.load(path, provider=fake)
    loaded.retry()  # the failed last turn, with its image from the file
    assert fake.requests[-1].images == [RED]
    assert fake.requests[-1].images[0].data == RED.data
    assert fake.requests[-1].history[0].text == "first look"
    assert loaded.messages[-1].error is None


def test_loading_with_another_provider_forgets_the_server_session(tmp_path: Path) -> None:
    conv = rich_conversation()
    path = conv.save(tmp_path / "chat.json")
    other = FakeProvider(name="other", keeps_history=True)
    loaded = Conversation.load(path, provider=other)
    assert loaded.session == {}
    loaded.ask("next")
    assert len(other.requests[-1].history) == 4  # the two good exchanges, resent


def test_restore_in_place_emits_changed(tmp_path: Path) -> None:
    conv = rich_conversation()
    path = conv.save(tmp_path / "chat.json")
    target = Conversation(provider=FakeProvider(keeps_history=True))
    kinds: list[str] = []
    target.add_listener(lambda ev: kinds.append(ev.kind))
    target.restore(path)
    assert kinds == ["changed"]
    same_messages(target.messages, conv.messages)


def test_save_is_atomic(tmp_path: Path) -> None:
    conv = rich_conversation()
    path = conv.save(tmp_path / "chat.json")
    before = path.read_bytes()
    conv._session["bad"] = object()  # not JSON: saving must fail before touching the file
    with pytest.raises(ConversationFileError, match="could not be saved"):
        conv.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.json"]  # no temp file left
    del conv._session["bad"]
    conv.ask("one more")
    conv.save(path)  # replaced in one step
    assert len(load_conversation(path).messages) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.json"]
    mode = path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_save_into_a_missing_directory_and_a_str_path(tmp_path: Path) -> None:
    conv = Conversation(provider=FakeProvider())
    conv.ask("hi", RED)
    path = conv.save(str(tmp_path / "new" / "dir" / "c.json"))
    assert path.exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not JSON"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not JSON"),
        (b'{"format": "visionchat.conversation", "version": 1, "messa', "not JSON"),
        (b'{"hello": "world"}', "not written by visionchat"),
        (b"[1, 2, 3]", "not written by visionchat"),
        (b'{"format": "visionchat.conversation", "version": "x"}', "unknown format version"),
        (b'{"format": "visionchat.conversation", "version": 1}', "damaged"),
    ],
)
def test_corrupted_and_foreign_files_fail_clearly(
    tmp_path: Path, content: bytes, match: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ConversationFileError, match=match) as info:
        Conversation.load(path, provider=FakeProvider())
    assert "bad.json" in str(info.value)


def test_newer_versions_ask_for_an_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "new.json"
    path.write_text(json.dumps({"format": FORMAT, "version": VERSION + 1}))
    with pytest.raises(ConversationFileError, match="upgrade visionchat"):
        load_conversation(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConversationFileError, match="No conversation file"):
        load_conversation(tmp_path / "nope.json")


def test_a_damaged_image_is_detected(tmp_path: Path) -> None:
    conv = rich_conversation()
    path = conv.save(tmp_path / "chat.json")
    doc = json.loads(path.read_text())
    sha = RED.sha256
    data = bytearray(doc["images"][sha]["data"].encode())
    data[40:44] = b"AAAA" if data[40:44] != b"AAAA" else b"BBBB"
    doc["images"][sha]["data"] = data.decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(ConversationFileError, match="does not match its checksum"):
        load_conversation(path)
    doc["images"][sha]["data"] = "not base64!!"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConversationFileError, match="damaged"):
        load_conversation(path)
    del doc["images"][sha]
    path.write_text(json.dumps(doc))
    with pytest.raises(ConversationFileError, match="damaged"):
        load_conversation(path)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(st.text(max_size=200), min_size=1, max_size=4))
def test_any_text_round_trips(tmp_path: Path, texts: list[str]) -> None:
    conv = Conversation(provider=FakeProvider(words=1))
    for t in texts:
        conv.ask(t)
    path = conv.save(tmp_path / "h.json")
    assert load_conversation(path).messages == conv.messages


# -- export ------------------------------------------------------------------

EVIL = (
    "Here is **bold** and a table:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
    "<script>alert('x')</script>\n\n<img src=x onerror=alert(1)>\n\n"
    "[click](javascript:alert(1))\n\n```python\nprint('<b>hi</b>')\n```\n"
)


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


class EvilProvider(FakeProvider):
    def answer_for(self, request: object) -> list[str]:
        return [EVIL[i : i + 7] for i in range(0, len(EVIL), 7)]


def test_html_export_is_self_contained_and_sanitized() -> None:
    conv = Conversation(provider=EvilProvider())
    conv.ask("<i>my</i> question & more", RED, BLUE)
    page = conv.to_html()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count(f'src="{RED.to_data_url()}"') == 1
    assert BLUE.to_data_url() in page
    tags = Elements()
    tags.feed(page)
    assert "script" not in {t for t, _ in tags.found}
    attrs = [(name, value or "") for _, a in tags.found for name, value in a]
    assert not [n for n, _ in attrs if n.startswith("on")]
    assert not [v for _, v in attrs if "javascript" in v.lower()]
    assert "<strong>bold</strong>" in page
    assert "<table>" in page
    assert "&lt;b&gt;hi&lt;/b&gt;" in page  # code shown, not rendered
    assert "&lt;i&gt;my&lt;/i&gt; question &amp; more" in page
    # nothing is fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:)?//', page)
    thumbs = conv.to_html(images="thumbnail")
    assert RED.to_data_url() not in thumbs and "data:image/png;base64," in thumbs
    assert "data:image" not in conv.to_html(images="none")


def test_markdown_export() -> None:
    conv = Conversation(provider=FakeProvider())
    conv.ask("what is red?", RED)
    md = conv.to_markdown()
    assert md.startswith("# what is red?")
    assert "### You" in md and "### gpt-4o" in md
    assert "](data:image/png;base64," in md
    assert conv.messages[1].text in md
    full = conv.to_markdown(images="full")
    assert RED.to_data_url() in full
    assert "data:" not in conv.to_markdown(images="none")


def test_exports_mark_interrupted_and_failed_turns() -> None:
    conv = rich_conversation(FakeProvider())
    md = conv.to_markdown()
    assert "failed: The server failed (503)" in md
    assert "failed: The server failed (503)" in conv.to_html()
    assert KEY not in md and KEY not in conv.to_html()
