"""One file per conversation: every message and every image, nothing secret.

The file is JSON (readable, diffable, one file to mail around) with images
stored once each, base64-encoded and keyed by their sha256, which is checked
again on load so a damaged file is reported instead of silently showing the
wrong picture.  Writing goes to a temporary file beside the target and is
renamed over it, so a crash mid-save never leaves half a conversation.  A
``format`` tag and a ``version`` number let a future release read old files
and let this one refuse files it does not understand.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cost import Estimate
from .errors import ConversationFileError
from .images import PreparedImage
from .providers.base import Usage

if TYPE_CHECKING:
    from ._secret import Secret
    from .conversation import Message

__all__ = ["FORMAT", "VERSION", "SavedConversation", "load_conversation", "save_conversation"]

FORMAT = "visionchat.conversation"
VERSION = 1


@dataclass(frozen=True)
class SavedConversation:
    conversation_id: str
    created: float
    model: str
    provider: str
    session: dict[str, Any]
    messages: list[Message]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _image_to_json(img: PreparedImage) -> dict[str, Any]:
    return {
        "mime": img.mime,
        "width": img.width,
        "height": img.height,
        "data": _b64(img.data),
        "thumbnail": _b64(img.thumbnail),
        "thumbnail_mime": img.thumbnail_mime,
        "source": img.source,
        "original_size": list(img.original_size),
        "original_format": img.original_format,
        "resized": img.resized,
    }


def _message_to_json(msg: Message) -> dict[str, Any]:
    return {
        "id": msg.id,
        "role": msg.role,
        "text": msg.text,
        "images": [img.sha256 for img in msg.images],
        "model": msg.model,
        "created": msg.created,
        "credits": msg.credits,
        "usage": None
        if msg.usage is None
        else {"input_tokens": msg.usage.input_tokens, "output_tokens": msg.usage.output_tokens},
        "error": msg.error,
        # a turn saved while still streaming is, once loaded, an interrupted one
        "interrupted": msg.interrupted or msg.streaming,
        "duration": msg.duration,
        "retryable": msg.retryable,
        "notices": list(msg.notices),
        "estimate": None if msg.estimate is None else msg.estimate.to_dict(),
        "web_search": msg.web_search,
        "record_id": msg.record_id,
    }


def _scrub(value: Any, secrets: Sequence[Secret]) -> Any:
    """Drop any string that contains a secret (a provider must never store one)."""
    if isinstance(value, str):
        return None if any(s.occurs_in(value) for s in secrets) else value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


def save_conversation(
    path: str | os.PathLike[str],
    *,
    conversation_id: str,
    created: float,
    model: str,
    provider: str,
    session: dict[str, Any],
    messages: Sequence[Message],
    secrets: Sequence[Secret] = (),
) -> Path:
    """Write the conversation to ``path`` atomically; returns the resolved path."""
    target = Path(path).expanduser()
    images: dict[str, dict[str, Any]] = {}
    for msg in messages:
        for img in msg.images:
            images.setdefault(img.sha256, _image_to_json(img))
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "id": conversation_id,
        "created": created,
        "model": model,
        "provider": provider,
        "session": _scrub(session, secrets),
        "messages": [_message_to_json(m) for m in messages],
        "images": images,
    }
    try:
        text = json.dumps(doc, ensure_ascii=False, allow_nan=False, indent=1)
    except (TypeError, ValueError) as exc:
        raise ConversationFileError(
            f"The conversation could not be saved: {exc}. The provider session must "
            "hold only JSON values; please report this."
        ) from None
    if any(s.occurs_in(text) for s in secrets):
        # Only reachable if a message text quotes the key itself.
        raise ConversationFileError(
            "Not saved: the conversation text contains the API key. Remove that message "
            "(conv.undo()) and save again."
        )
    directory = target.parent if str(target.parent) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ConversationFileError(f"Cannot write {target}: {exc.strerror}.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ConversationFileError(f"Cannot write {target}: {exc.strerror}.") from None
        raise
    return target


def _bad(path: Path, why: str) -> ConversationFileError:
    return ConversationFileError(
        f"{path} is not a readable visionchat conversation ({why}). "
        "Check the path; a file saved with conv.save() can be loaded back."
    )


def _image_from_json(path: Path, sha: str, raw: Any) -> PreparedImage:
    try:
        data = base64.b64decode(raw["data"], validate=True)
        thumb = base64.b64decode(raw["thumbnail"], validate=True)
        width, height = int(raw["width"]), int(raw["height"])
        orig_w, orig_h = (int(v) for v in raw["original_size"])
        img = PreparedImage(
            data=data,
            mime=str(raw["mime"]),
            width=width,
            height=height,
            sha256=sha,
            thumbnail=thumb,
            thumbnail_mime=str(raw["thumbnail_mime"]),
            source=str(raw["source"]),
            original_size=(orig_w, orig_h),
            original_format=None if raw["original_format"] is None else str(raw["original_format"]),
            resized=bool(raw["resized"]),
        )
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise _bad(path, f"image {sha[:12]} is damaged: {exc!r}") from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise _bad(path, f"image {sha[:12]} does not match its checksum")
    if img.mime not in ("image/png", "image/jpeg", "image/webp"):
        raise _bad(path, f"image {sha[:12]} has an unsupported type {img.mime!r}")
    return img


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _message_from_json(raw: Any, images: dict[str, PreparedImage]) -> Message:
    from .conversation import Message

    usage = raw["usage"]
    estimate = raw["estimate"]
    role = raw["role"]
    if role not in ("user", "assistant"):
        raise ValueError(f"unknown role {role!r}")
    return Message(
        id=str(raw["id"]),
        role=role,
        text=str(raw["text"]),
        images=[images[sha] for sha in raw["images"]],
        model=None if raw["model"] is None else str(raw["model"]),
        created=float(raw["created"]),
        credits=_opt_float(raw["credits"]),
        usage=None
        if usage is None
        else Usage(input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"]),
        error=None if raw["error"] is None else str(raw["error"]),
        interrupted=bool(raw["interrupted"]),
        duration=_opt_float(raw["duration"]),
        retryable=bool(raw.get("retryable", False)),
        notices=[str(n) for n in raw.get("notices", [])],
        estimate=None if estimate is None else Estimate.from_dict(estimate),
        web_search=bool(raw.get("web_search", False)),
        record_id=raw.get("record_id"),
    )


def load_conversation(path: str | os.PathLike[str]) -> SavedConversation:
    """Read a file written by ``save_conversation``; ConversationFileError otherwise."""
    source = Path(path).expanduser()
    try:
        raw_bytes = source.read_bytes()
    except FileNotFoundError:
        raise ConversationFileError(
            f"No conversation file at {source}; check the path (conv.save(path) writes one)."
        ) from None
    except OSError as exc:
        raise ConversationFileError(f"Cannot read {source}: {exc.strerror}.") from None
    try:
        doc = json.loads(raw_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _bad(source, "not JSON: corrupted, truncated or another kind of file") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _bad(source, "JSON, but not written by visionchat")
    version = doc.get("version")
    if not isinstance(version, int) or version < 1:
        raise _bad(source, f"unknown format version {version!r}")
    if version > VERSION:
        raise ConversationFileError(
            f"{source} was saved by a newer visionchat (file format {version}, this one "
            f"reads up to {VERSION}); upgrade visionchat to open it."
        )
    try:
        images = {
            str(sha): _image_from_json(source, str(sha), raw) for sha, raw in doc["images"].items()
        }
        messages = [_message_from_json(m, images) for m in doc["messages"]]
        session = doc.get("session") or {}
        if not isinstance(session, dict):
            raise TypeError("session is not an object")
        return SavedConversation(
            conversation_id=str(doc["id"]),
            created=float(doc["created"]),
            model=str(doc["model"]),
            provider=str(doc["provider"]),
            session=session,
            messages=messages,
        )
    except ConversationFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _bad(source, f"damaged: {exc!r}") from None
