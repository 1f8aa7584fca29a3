"""ChatWidget: a view of a Conversation in the notebook.

The widget owns no conversation logic. Settled state (finished messages,
thumbnails, the chosen model) lives in traits written once per turn, so a
re-opened view rebuilds the transcript; streaming text travels as small custom
messages carrying only new text, coalesced to one message per ~40 ms, because
ipywidgets re-sends a whole trait on every change (appending to a trait would
cost O(n²) bytes over a reply).

Handlers run on whatever thread the kernel delivers widget messages on (a
subshell thread with ipykernel 7 and JupyterLab >= 4.4, even while a cell runs).
Turns go to the conversation's engine, so those handlers return at once; an
attachment is prepared (or, for an address dragged from a web page, fetched
with a timeout and a size cap) right in the handler, so its preview or its error
comes back in the same exchange. Files from the computer arrive in parts (see
``_uploads``); the image behind a thumbnail is sent only when the page asks.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ._uploads import Uploads
from .conversation import Conversation, ConversationEvent, Message
from .errors import ImageError, VisionChatError
from .images import PreparedImage

__all__ = ["ChatWidget", "chat"]

log = logging.getLogger(__name__)

_STATIC = Path(__file__).parent / "static"
_COALESCE_SECONDS = 0.04
# Settled messages in `history_recent` before they move into `history`, and how
# many stay recent after a move: the earlier part is re-sent once per ~16 messages.
_RECENT_MAX = 24
_RECENT_MIN = 8


def _bundle(name: str) -> Path | str:
    path = _STATIC / name
    if path.exists():
        return path
    if name.endswith(".css"):
        return ""
    message = (
        "visionchat's front end is not built: run `npm install && npm run build` "
        "in the source checkout, or reinstall the package with `pip install visionchat`."
    )
    return f"export default {{ render({{ el }}) {{ el.textContent = {message!r}; }} }};"


def _settled(m: Message) -> dict[str, Any]:
    """A message as the page sees it: no image bytes (thumbnails travel separately)."""
    tokens = None
    if m.usage is not None and (m.usage.input_tokens or m.usage.output_tokens):
        tokens = (m.usage.input_tokens or 0) + (m.usage.output_tokens or 0)
    return {
        "id": m.id,
        "role": m.role,
        "text": m.text,
        "model": m.model,
        "images": [img.sha256 for img in m.images],
        "credits": m.credits,
        "tokens": tokens,
        "error": m.error,
        "retryable": m.retryable,
        "interrupted": m.interrupted,
        "duration": m.duration,
    }


def _thumb(img: PreparedImage) -> dict[str, Any]:
    return {
        "data": img.thumbnail,
        "mime": img.thumbnail_mime,
        "width": img.width,
        "height": img.height,
    }


class ChatWidget(anywidget.AnyWidget):
    """A chat transcript with image previews, driving ``conversation``.

    ``ChatWidget(conv)`` shows an existing conversation (turns asked from Python
    with ``conv.ask`` stream into it too); ``ChatWidget(None, img, fig)`` starts a
    new one with those images attached to the first message.
    """

    _esm = _bundle("widget.js")
    _css = _bundle("widget.css")

    # Settled messages: readable here, and sent to the page as gzip-compressed JSON
    # in two binary buffers written once per turn: `history` holds the earlier
    # messages and is re-sent only when they change or every few turns, when the
    # recent ones move into it; `history_recent` holds the last few. The text of a
    # reply has already streamed to the page, so its settled copy should cost
    # little, and a long conversation should not be re-sent whole on every turn.
    messages = traitlets.List(traitlets.Dict())
    history = traitlets.Bytes(b"").tag(sync=True)
    history_recent = traitlets.Bytes(b"").tag(sync=True)
    thumbnails = traitlets.Dict().tag(sync=True)
    pending = traitlets.List(traitlets.Unicode()).tag(sync=True)
    model = traitlets.Unicode("").tag(sync=True)
    models = traitlets.List(traitlets.Dict()).tag(sync=True)
    web_search = traitlets.Bool(False).tag(sync=True)
    web_search_available = traitlets.Bool(False).tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    notice = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        conversation: Conversation | None = None,
        *images: object,
        model: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        conv = conversation if conversation is not None else _new_conversation(model)
        self._conv = conv
        self._lock = threading.Lock()
        self._attached: dict[str, PreparedImage] = {}
        self._uploads = Uploads()  # files from the page, arriving in parts
        self._earlier: list[dict[str, Any]] = []  # the messages `history` holds
        self._buffer: dict[str, list[str]] = {}
        self._last_flush = 0.0
        self._timer: threading.Timer | None = None
        self._futures: list[Any] = []  # turns started from the page (for tests and close)
        self.model = model or conv.model
        self.models = _model_choices(conv)
        self.web_search_available = conv.provider_name == "1min"
        self.notice = _notice(conv)
        self.attach(*images)
        self._remove_listener = conv.add_listener(self._on_event)
        self.on_msg(self._on_msg)
        self._sync_messages()

    # -- Python API ----------------------------------------------------------

    @property
    def conversation(self) -> Conversation:
        return self._conv

    def attach(self, *images: object) -> None:
        """Attach images to the next message (shown as previews until sent)."""
        # At the chosen model's limit, so the preview shows the size that will be sent.
        prepared = self._conv._prepare(images, self.model or self._conv.model)
        with self._lock:
            for img in prepared:
                self._attached.setdefault(img.sha256, img)
        self._add_thumbnails(prepared)
        self.pending = list(self._attached)

    @traitlets.observe("model")
    def _model_changed(self, change: dict[str, Any]) -> None:
        """A model with a smaller image limit: previews shrink to what it will get."""
        if not getattr(self, "_attached", None):
            return
        with self._lock:
            old = list(self._attached.values())
        fitted = self._conv._prepare(old, change["new"] or self._conv.model)
        if [i.sha256 for i in fitted] == [i.sha256 for i in old]:
            return
        with self._lock:
            self._attached = {img.sha256: img for img in fitted}
        self._add_thumbnails(fitted)
        self.pending = list(self._attached)

    def close(self) -> None:
        self._remove_listener()
        super().close()

    # -- page -> kernel ------------------------------------------------------

    def _on_msg(self, _widget: object, content: dict[str, Any], buffers: Sequence[Any]) -> None:
        try:
            kind = content.get("type")
            if kind == "submit":
                self._submit(str(content.get("text", "")))
            elif kind == "cancel":
                self._conv.cancel()
            elif kind == "retry":
                self._watch(self._conv.submit_retry(model=self.model or None))
            elif kind == "attach" and buffers:
                self.error = ""
                self._receive_file(content, bytes(buffers[0]))
            elif kind == "attach-url":
                self.error = ""
                try:
                    self._attach_url(str(content.get("url", "")))
                finally:  # clears the page's "Fetching…"
                    self.send({"type": "attach-progress", "name": "", "received": 1, "total": 1})
            elif kind == "view-image":
                self._send_image(str(content.get("sha")))
            elif kind == "remove-attachment":
                with self._lock:
                    self._attached.pop(str(content.get("sha")), None)
                self.pending = list(self._attached)
        except VisionChatError as exc:
            self.error = str(exc)
        except Exception as exc:  # a handler must never die silently
            log.exception("visionchat widget message failed")
            self.error = f"Something went wrong in the widget: {exc}"

    def _attach_url(self, url: str) -> None:
        """An image dragged from a web page: fetched here, with a timeout and a size cap.

        Only http(s): a page message must not make the kernel open local files.
        """
        if not url.lower().startswith(("http://", "https://")):
            raise ImageError("Only http(s) addresses can be dropped; drop image files instead.")
        self.attach(url)

    def _receive_file(self, content: dict[str, Any], chunk: bytes) -> None:
        """One part of a file from the page; the last part attaches the whole file."""
        name = str(content.get("name") or "the file")
        parts = int(content.get("parts") or 1)
        part = int(content.get("part") or 0)
        whole = self._uploads.receive(str(content.get("upload") or ""), name, part, parts, chunk)
        if parts > 1:
            self.send(
                {"type": "attach-progress", "name": name, "received": part + 1, "total": parts}
            )
        if whole is None:
            return
        try:
            self.attach(whole)
        except ImageError as exc:
            raise ImageError(f"{name}: {exc}") from None

    def _send_image(self, sha: str) -> None:
        """The image behind a thumbnail, as sent, for the page's viewer.

        Sent only when asked for: a transcript of many images costs the page
        thumbnails alone until someone looks closer.
        """
        img = self._image(sha)
        if img is None:
            self.send({"type": "image-missing", "sha": sha})
            return
        self.send(
            {
                "type": "image",
                "sha": sha,
                "mime": img.mime,
                "width": img.width,
                "height": img.height,
            },
            buffers=[img.data],
        )

    def _image(self, sha: str) -> PreparedImage | None:
        with self._lock:
            if sha in self._attached:
                return self._attached[sha]
        for m in reversed(self._conv.messages):
            for img in m.images:
                if img.sha256 == sha:
                    return img
        return None

    def _submit(self, text: str) -> None:
        with self._lock:
            images = list(self._attached.values())
            self._attached.clear()
        if not text and not images:
            return
        self.error = ""
        self.pending = []
        self._watch(
            self._conv.submit(text, *images, model=self.model or None, web_search=self.web_search)
        )

    def _watch(self, future: Any) -> None:
        self._futures = [f for f in self._futures if not f.done()] + [future]

        def done(f: Any) -> None:
            exc = f.exception()
            # Errors of a started turn are shown in the transcript; an error before
            # the turn started (bad image, model without vision) shows here.
            if exc is None or isinstance(exc, KeyboardInterrupt):
                return
            if not isinstance(exc, VisionChatError) or not self._shown(exc):
                self.error = str(exc)

        future.add_done_callback(done)

    def _shown(self, exc: BaseException) -> bool:
        return any(m.error == str(exc) for m in self._conv.messages[-2:])

    # -- conversation -> page (engine thread) --------------------------------

    def _on_event(self, ev: ConversationEvent) -> None:
        if ev.kind == "delta":
            self._queue_delta(ev.message_id, ev.text)
            return
        self._flush()
        if ev.kind == "turn-start":
            images = ev.user_message.images if ev.user_message else []
            self._add_thumbnails(images)
            self._sync_messages()
            self.busy = True
            self.send(
                {
                    "type": "turn-start",
                    "id": ev.message_id,
                    "role": "assistant",
                    "model": ev.message.model if ev.message and ev.message.model else self.model,
                }
            )
        elif ev.kind == "upload-progress" and ev.progress:
            done, total = ev.progress
            self.send(
                {"type": "upload-progress", "id": ev.message_id, "done": done, "total": total}
            )
        elif ev.kind == "turn-end" and ev.message is not None:
            # The page has the text from the deltas: send only the facts.
            facts = {k: v for k, v in _settled(ev.message).items() if k != "text"}
            self.send({"type": "turn-end", "id": ev.message_id, "message": facts})
            self._sync_messages()
            self.busy = self._conv.busy
        elif ev.kind == "turn-error":
            self.send(
                {
                    "type": "turn-error",
                    "id": ev.message_id,
                    "message": ev.error or "The turn failed.",
                    "retryable": ev.retryable,
                }
            )
            self._sync_messages()
            self.busy = self._conv.busy
        elif ev.kind == "changed":
            self._sync_messages()

    def _queue_delta(self, message_id: str, text: str) -> None:
        with self._lock:
            self._buffer.setdefault(message_id, []).append(text)
            due = time.monotonic() - self._last_flush >= _COALESCE_SECONDS
            if not due and self._timer is None:
                self._timer = threading.Timer(_COALESCE_SECONDS, self._flush)
                self._timer.daemon = True
                self._timer.start()
        if due:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            buffered, self._buffer = self._buffer, {}
            self._last_flush = time.monotonic()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        for message_id, parts in buffered.items():
            self.send({"type": "delta", "id": message_id, "text": "".join(parts)})

    def _sync_messages(self) -> None:
        settled = [m for m in self._conv.messages if not m.streaming]
        self._add_thumbnails([img for m in settled for img in m.images])
        dicts = [_settled(m) for m in settled]
        self.messages = dicts
        earlier = self._earlier
        if dicts[: len(earlier)] != earlier:  # undo, fork, retry or reload touched them
            earlier = []
        if len(dicts) - len(earlier) > _RECENT_MAX:
            earlier = dicts[: len(dicts) - _RECENT_MIN]
        with self.hold_sync():  # both parts reach the page in one update
            if earlier is not self._earlier:
                self._earlier = earlier
                self.history = _gzip_json(earlier)
            self.history_recent = _gzip_json(dicts[len(earlier) :])

    def _add_thumbnails(self, images: Sequence[PreparedImage]) -> None:
        new = {img.sha256: _thumb(img) for img in images if img.sha256 not in self.thumbnails}
        if new:
            self.thumbnails = {**self.thumbnails, **new}


def _gzip_json(value: Any) -> bytes:
    payload = json.dumps(value, separators=(",", ":")).encode()
    return gzip.compress(payload, compresslevel=6, mtime=0)


def _new_conversation(model: str | None) -> Conversation:
    return Conversation(model=model) if model else Conversation()


def _model_choices(conv: Conversation) -> list[dict[str, str]]:
    try:
        infos = conv.models()
    except VisionChatError:
        return []
    choices = []
    for info in infos:
        label = info.name or info.id
        if info.input_price == 0 and not info.output_price:
            label += " · free"
        elif info.input_price is not None:
            label += f" · {info.input_price:g} in / {info.output_price or 0:g} out per 1K tokens"
        choices.append({"id": info.id, "label": label})
    return choices


def _notice(conv: Conversation) -> str:
    parts = []
    if conv.provider_name == "offline":
        parts.append(
            "Offline demo model: answers are measured from the images, not understood. "
            "Set ONEMIN_API_KEY (1min.ai) or OPENAI_API_KEY / OPENAI_BASE_URL for a real model."
        )
    try:
        from importlib.metadata import version

        if int(version("ipykernel").split(".")[0]) < 7:
            parts.append("This kernel answers the widget only between cells (ipykernel < 7).")
    except (ImportError, ValueError, LookupError):
        pass
    return " ".join(parts)


def chat(
    *images: object, model: str | None = None, conversation: Conversation | None = None
) -> ChatWidget:
    """Open a chat widget about ``images`` (PIL images, arrays, figures, paths, URLs)."""
    return ChatWidget(conversation, *images, model=model)
