"""The conversation: a plain Python object holding the turns, whoever asked them.

Every turn runs on the private engine (``visionchat.engine``), never on the
caller's event loop, so the same object works from a script, a thread, an
``async`` function and a notebook cell whose kernel loop is already running.
The blocking calls (``ask``, ``stream``) wait on the engine's future and drain
a thread-safe queue of text deltas; the async calls wrap the same future for
the caller's loop.  Widgets and the magic are only views: they listen to
``ConversationEvent``s and call ``submit``/``cancel``.

Nothing here imports IPython: the notebook display is loaded lazily, and only
when IPython is already imported.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import importlib
import logging
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from . import cost as _cost
from ._secret import Secret
from .engine import Engine, get_engine
from .errors import NotVisionCapableError, TurnCancelledError, VisionChatError
from .images import PreparedImage, fits, prepare_image
from .providers.base import (
    HistoryTurn,
    ModelInfo,
    Provider,
    TextDelta,
    TurnRequest,
    TurnResult,
    UploadProgress,
    Usage,
)

if TYPE_CHECKING:
    from ._notebook_display import LiveAnswer

__all__ = ["Conversation", "ConversationEvent", "Message", "Reply", "resolve_provider"]

_log = logging.getLogger("visionchat")

EventKind = Literal["turn-start", "delta", "turn-end", "turn-error", "upload-progress", "changed"]

#: Room left in the context window for the answer when history is trimmed.
_ANSWER_RESERVE_TOKENS = 4096

_DONE = object()  # end-of-turn marker in delta queues
#: Seconds between two hand-offs of streamed text to a waiting thread (see ``_Turn.deliver``).
DELIVERY_INTERVAL = 0.01
#: Seconds the engine pauses after handing over a turn's first text, so the waiting
#: thread wakes and shows it before the engine goes on (see ``_Turn.deliver``).
FIRST_HANDOFF_PAUSE = 5e-5


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Message:
    """One message of the transcript.

    A user message holds the prompt and the images as sent; an assistant
    message holds the answer (possibly partial), who answered and what it cost.
    ``error`` is set when the turn failed, ``interrupted`` when it was stopped;
    ``streaming`` is true only while the answer is still arriving.
    """

    id: str
    role: Literal["user", "assistant"]
    text: str = ""
    images: list[PreparedImage] = field(default_factory=list)
    model: str | None = None
    created: float = field(default_factory=time.time)  # seconds since the epoch
    credits: float | None = None
    usage: Usage | None = None
    error: str | None = None
    interrupted: bool = False
    duration: float | None = None  # seconds from sending to the last byte
    retryable: bool = False
    notices: list[str] = field(default_factory=list)
    estimate: _cost.Estimate | None = None
    web_search: bool = False
    record_id: str | None = None
    streaming: bool = False

    def copy(self) -> Message:
        return dataclasses.replace(self, images=list(self.images), notices=list(self.notices))


@dataclass(frozen=True)
class ConversationEvent:
    """What listeners receive, on the engine thread.

    kinds: ``turn-start`` (``message`` is the new, empty assistant message and
    ``user_message`` the prompt), ``delta`` (``text`` is only the new text),
    ``upload-progress`` (``progress`` = (done, total)), ``turn-end`` (``message``
    is the settled assistant message, possibly ``interrupted``), ``turn-error``
    (``error`` and ``retryable``; ``message`` keeps any partial text), and
    ``changed`` (messages were removed or replaced: undo, retry, restore, clear).
    """

    kind: EventKind
    message_id: str
    text: str = ""
    message: Message | None = None
    error: str | None = None
    retryable: bool = False
    progress: tuple[int, int] | None = None
    user_message: Message | None = None


@dataclass(frozen=True)
class Reply:
    """The answer to one turn.  ``str(reply)`` is its text."""

    text: str
    model: str | None
    message_id: str
    credits: float | None = None
    usage: Usage | None = None
    interrupted: bool = False
    images: tuple[PreparedImage, ...] = ()  # the images sent with the question
    notices: tuple[str, ...] = ()
    estimate: _cost.Estimate | None = None
    duration: float | None = None
    error: str | None = None
    # execution count of the notebook cell that already showed this reply live
    _shown_in: int | None = field(default=None, compare=False, repr=False)

    @classmethod
    def _from(cls, answer: Message, question: Message | None) -> Reply:
        return cls(
            text=answer.text,
            model=answer.model,
            message_id=answer.id,
            credits=answer.credits,
            usage=answer.usage,
            interrupted=answer.interrupted,
            images=tuple(question.images) if question is not None else (),
            notices=tuple(answer.notices),
            estimate=answer.estimate,
            duration=answer.duration,
            error=answer.error,
        )

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        extra = ", interrupted=True" if self.interrupted else ""
        return f"Reply(model={self.model!r}, text={text!r}, credits={self.credits!r}{extra})"

    def _repr_markdown_(self) -> str:
        parts = [self.text]
        if self.interrupted:
            parts.append("*— interrupted: the answer above is partial.*")
        parts.extend(f"*{n}*" for n in self.notices)
        return "\n\n".join(p for p in parts if p)

    def _ipython_display_(self) -> None:
        # Imported here: this only runs inside IPython.
        from ._notebook_display import display_reply

        display_reply(self)


# -- provider choice ---------------------------------------------------------

_ALIASES = {
    "1min": "1min",
    "1min.ai": "1min",
    "oneminai": "1min",
    "onemin": "1min",
    "openai": "openai",
    "offline": "offline",
}
_offline_notice_shown = False


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def resolve_provider(
    provider: str | Provider | None = None,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    api: str = "current",
) -> tuple[Provider, Secret | None]:
    """Build the backend a conversation talks to; returns it and the key it uses.

    With no ``provider``: ``ONEMIN_API_KEY`` (or ``ONE_MIN_AI_API_KEY``) selects
    1min.ai, ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` the OpenAI-compatible
    backend, an explicit ``api_key`` 1min.ai, and otherwise the offline demo
    model (with a one-line notice, so nobody mistakes it for a real model).
    Provider modules are imported only when chosen.  The key comes back as a
    ``Secret``: the clear string goes into the provider and nowhere else.
    """
    if provider is not None and not isinstance(provider, str):
        return provider, Secret.of(api_key)
    if provider is None:
        if _env("ONEMIN_API_KEY", "ONE_MIN_AI_API_KEY"):
            name = "1min"
        elif _env("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            name = "openai"
        elif api_key is not None:
            name = "1min"
        else:
            name = "offline"
            _notice_offline()
    else:
        try:
            name = _ALIASES[provider.strip().lower()]
        except KeyError:
            raise VisionChatError(
                f"Unknown provider {provider!r}; use '1min', 'openai', 'offline' or a "
                "Provider instance."
            ) from None
    if name == "1min":
        OneMinAIProvider = _provider_class("oneminai", "OneMinAIProvider")
        key = api_key or _env("ONEMIN_API_KEY", "ONE_MIN_AI_API_KEY")
        kwargs: dict[str, Any] = {"api": api}
        if base_url is not None:
            kwargs["base_url"] = base_url
        return OneMinAIProvider(key, **kwargs), Secret.of(key)
    if name == "openai":
        OpenAIProvider = _provider_class("openai", "OpenAIProvider")
        key = api_key or _env("OPENAI_API_KEY")
        url = base_url or _env("OPENAI_BASE_URL")
        made = OpenAIProvider(key, base_url=url) if url else OpenAIProvider(key)
        return made, Secret.of(key)
    OfflineProvider = _provider_class("offline", "OfflineProvider")
    return OfflineProvider(), None


#: The model a conversation uses when none is named (most backends offer it).
DEFAULT_MODEL = "gpt-4o"


def _default_model(provider: Provider) -> str:
    """``provider.default_model`` if it has one; the offline model is its only model."""
    explicit = getattr(provider, "default_model", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    if getattr(provider, "name", None) == "offline":
        info = provider.model_info(DEFAULT_MODEL)
        if info is not None:
            return info.id
    return DEFAULT_MODEL


def _provider_class(module: str, name: str) -> Any:
    """Import a backend only when it is chosen (each pulls in its own dependencies)."""
    return getattr(importlib.import_module(f"visionchat.providers.{module}"), name)


def _notice_offline() -> None:
    global _offline_notice_shown
    if _offline_notice_shown:
        return
    _offline_notice_shown = True
    print(
        "visionchat: no API key found, using the offline demo model "
        "(set ONEMIN_API_KEY or OPENAI_API_KEY for a real one).",
        file=sys.stderr,
    )


# -- turns -------------------------------------------------------------------


@dataclass
class _TurnSpec:
    prompt: str
    images: list[object]
    model: str | None
    web_search: bool
    retry: bool = False


@dataclass(eq=False)
class _Turn:
    """A submitted turn: queued, then running on the engine."""

    id: str  # the assistant message's id
    spec: _TurnSpec
    sink: Callable[[str], None] | None = None
    task: asyncio.Task[Any] | None = None
    cancel_requested: bool = False
    started: bool = False

    def __post_init__(self) -> None:
        self._pending: list[str] = []
        self._first_sent = False
        self._flushed_at = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def deliver(self, text: str) -> None:
        """Hand text to the waiting caller: the first at once, then at most every 10 ms.

        Every hand-off wakes the waiting thread, which then takes the GIL from
        the engine: about 35 µs of CPU each.  Deltas that come in one pass of
        the loop always went on together; a stream paced by the server (a fast
        local model) brings one delta per pass, and at 2,000 a second the
        interval cut hand-offs from 2,000 to about 128 and the CPU time by 14-21%.  A
        display cannot show 10 ms apart anyway.  A slow stream's deltas, more
        than ``DELIVERY_INTERVAL`` apart, still go on the next pass of the loop,
        and none waits for a later one.
        """
        if self.sink is None:
            return
        loop = asyncio.get_running_loop()
        if not self._first_sent:  # the first text goes at once: it is what users wait for
            self._first_sent = True
            self._flushed_at = loop.time()
            self.sink(text)
            # Let the waiting thread take the GIL and show it now.  sleep(0)
            # hands the GIL over only if that thread is already running; the OS
            # takes tens of µs to wake it, and by then the engine has the GIL
            # back and keeps it until it waits on the network, which for a reply
            # that came in one burst is after parsing all of it.
            time.sleep(FIRST_HANDOFF_PAUSE)
            return
        self._pending.append(text)
        if self._timer is None:
            wait = self._flushed_at + DELIVERY_INTERVAL - loop.time()
            self._timer = loop.call_later(max(0.0, wait), self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending and self.sink is not None:
            text = "".join(self._pending)
            self._pending.clear()
            self._flushed_at = asyncio.get_running_loop().time()
            self.sink(text)

    def cancel_on_engine(self) -> None:
        """Runs on the engine thread: stop the turn, keep what arrived."""
        self.cancel_requested = True
        if self.task is not None and not self.task.done():
            self.task.cancel()


class _TextBuffer:
    """Appends deltas to a message's text in amortised linear time.

    ``message.text += delta`` copies the whole answer on every chunk, which is
    quadratic: 0.7 s of CPU for 50,000 chunks.  Pieces are batched instead and
    folded in when they reach a quarter of the text, or by a timer 50 ms after
    the first of them arrived, so ``message.text`` is never more than 50 ms
    behind while it streams, and a chunk costs two list operations.
    """

    def __init__(self, message: Message) -> None:
        self._message = message
        self._pending: list[str] = []
        self._pending_len = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, piece: str) -> None:
        if not self._pending:
            self._timer = asyncio.get_running_loop().call_later(0.05, self.flush)
        self._pending.append(piece)
        self._pending_len += len(piece)
        if self._pending_len * 4 >= len(self._message.text):
            self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self._message.text += "".join(self._pending)
            self._pending.clear()
            self._pending_len = 0


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()


class Conversation:
    """A conversation with a vision model; see the package README for a tour.

    ``provider`` is ``"1min"``, ``"openai"``, ``"offline"``, a Provider instance
    or ``None`` (chosen from the environment).  The API key stays in the
    provider as a masked ``Secret``: it is never shown, saved, exported or
    pickled.  ``copy.copy`` and ``copy.deepcopy`` give a ``fork()``.
    """

    def __init__(
        self,
        model: str | None = None,
        provider: str | Provider | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        api: str = "current",
    ) -> None:
        prov, key = resolve_provider(provider, api_key=api_key, base_url=base_url, api=api)
        self._setup(prov, key, model or _default_model(prov))

    def _setup(self, provider: Provider, key: Secret | None, model: str) -> None:
        self._provider = provider
        self._key = key  # only to make sure it never lands in a saved file
        self._model = model
        self.id = _new_id()
        self.created = time.time()
        self._messages: list[Message] = []
        self._session: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._listeners: list[Callable[[ConversationEvent], None]] = []
        self._turns: dict[str, _Turn] = {}
        self._turn_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._engine: Engine = get_engine()
        if hasattr(provider, "aclose"):
            self._engine.register_closeable(provider)

    @classmethod
    def _from_parts(
        cls,
        provider: Provider,
        key: Secret | None,
        model: str,
        messages: Sequence[Message],
        session: dict[str, Any],
    ) -> Conversation:
        conv = cls.__new__(cls)
        conv._setup(provider, key, model)
        conv._messages = [m.copy() for m in messages]
        conv._session = dict(session)
        return conv

    # -- plain state -------------------------------------------------------

    @property
    def model(self) -> str:
        """The default model for new turns (``ask(..., model=)`` overrides it per turn)."""
        return self._model

    @model.setter
    def model(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise VisionChatError("model must be a non-empty model id such as 'gpt-4o'.")
        self._model = value.strip()

    @property
    def provider(self) -> Provider:
        return self._provider

    @property
    def provider_name(self) -> str:
        return str(getattr(self._provider, "name", type(self._provider).__name__))

    @property
    def session(self) -> dict[str, Any]:
        """A copy of the provider's saved state (for 1min.ai: the server conversation)."""
        with self._lock:
            return dict(self._session)

    @property
    def messages(self) -> list[Message]:
        """A snapshot of the transcript (the assistant message of a running turn grows)."""
        with self._lock:
            return list(self._messages)

    @property
    def turns(self) -> int:
        with self._lock:
            return sum(1 for m in self._messages if m.role == "user")

    @property
    def busy(self) -> bool:
        """True while a turn is queued or running."""
        with self._lock:
            return bool(self._turns)

    @property
    def last_reply(self) -> Reply | None:
        """The latest answer (also after ``stream`` or an interrupted ``ask``)."""
        with self._lock:
            for i in range(len(self._messages) - 1, -1, -1):
                msg = self._messages[i]
                if msg.role == "assistant":
                    question = self._messages[i - 1] if i > 0 else None
                    return Reply._from(msg, question)
        return None

    def __repr__(self) -> str:
        return (
            f"<Conversation model={self._model!r} provider={self.provider_name!r} "
            f"turns={self.turns}>"
        )

    def __len__(self) -> int:
        return self.turns

    # -- copies stay in this process ------------------------------------------

    def __copy__(self) -> Conversation:
        """A fork: a copy sharing the message list and lock would corrupt both."""
        return self.fork()

    def __deepcopy__(self, memo: dict[int, Any]) -> Conversation:
        """A fork: independent messages, the same provider (its connections and key)."""
        return self.fork()

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A pickle is a file or a message to another process: the key would travel
        # in clear, and the engine, locks and connections cannot travel at all.
        raise TypeError(
            "A Conversation cannot be pickled: it holds an API key, which visionchat never "
            "writes out, and live connections. To move or keep its content, use "
            "conv.save(path) here and Conversation.load(path) there (the key comes from "
            "the environment or api_key=...); to branch it in this process, use conv.fork() "
            "or copy.deepcopy(conv)."
        )

    # -- listeners ----------------------------------------------------------

    def add_listener(self, fn: Callable[[ConversationEvent], None]) -> Callable[[], None]:
        """Call ``fn(event)`` for every event, on the engine thread; returns a remover.

        Listeners must be quick (they run between stream chunks).  An exception
        in one is logged and never breaks a turn.
        """
        with self._lock:
            self._listeners.append(fn)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(fn)

        return remove

    def _emit(self, event: ConversationEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for fn in listeners:
            try:
                fn(event)
            except Exception:
                _log.exception("visionchat listener %r failed on %s", fn, event.kind)

    # -- models and estimates ---------------------------------------------------

    def model_info(self, model: str | None = None) -> ModelInfo | None:
        """What the provider (or the catalog) knows about ``model``, without network."""
        model = model or self._model
        info: ModelInfo | None = None
        try:
            info = self._provider.model_info(model)
        except Exception:
            _log.debug("model_info(%r) failed", model, exc_info=True)
        if info is None:
            info = _catalog_info(model)
        return info

    def models(self) -> list[ModelInfo]:
        """Vision-capable models for a picker (the catalog when the listing fails)."""
        return self._engine.run(self.models_async())

    async def models_async(self) -> list[ModelInfo]:
        async def fetch() -> list[ModelInfo]:
            try:
                found = await self._provider.list_models()
            except VisionChatError:
                _log.info("listing models failed; using the catalog", exc_info=True)
                found = _catalog_models()
            return [m for m in found if m.vision]

        return await asyncio.wrap_future(self._engine.submit(fetch()))

    def _limits(self, model: str) -> _ImageLimits:
        """What ``model`` keeps of an image, as ``prepare_image`` takes it."""
        return image_limits(self.model_info(model))

    def _prepare(self, images: Sequence[object], model: str) -> list[PreparedImage]:
        """The images as ``model`` will receive them.

        An image prepared earlier (a widget attachment, a previous turn's) is used
        as it is unless it is larger than this model takes: then it is scaled down
        here, so what is shown as sent is what is sent.
        """
        return _fit(images, self._limits(model))

    def estimate(self, prompt: str, *images: object, model: str | None = None) -> _cost.Estimate:
        """Estimated input tokens and price of asking this now (history included)."""
        model = model or self._model
        prepared = self._prepare(images, model)
        info = self.model_info(model)
        with self._lock:
            prior = list(self._messages)
        user = Message(id="", role="user", text=prompt, images=prepared)
        history_tokens = 0
        if prior and self._sends_history():
            _history, _notices, history_tokens = self._plan_context(prior, user, model, info)
        return _cost.estimate_turn(
            prompt,
            [(i.width, i.height) for i in prepared],
            model,
            info,
            history_tokens=history_tokens,
        )

    def cost(self) -> _cost.CostReport:
        """Per-turn and total cost: reported credits and tokens beside the estimates."""
        rows = []
        turn = 0
        with self._lock:
            for msg in self._messages:
                if msg.role == "user":
                    turn += 1
                    continue
                est = msg.estimate
                status = (
                    "running"
                    if msg.streaming
                    else "error"
                    if msg.error
                    else "interrupted"
                    if msg.interrupted
                    else "ok"
                )
                rows.append(
                    _cost.CostRow(
                        turn=turn,
                        model=msg.model or "",
                        estimated_tokens=est.input_tokens if est else None,
                        estimated_price=est.price if est else None,
                        credits=msg.credits,
                        input_tokens=msg.usage.input_tokens if msg.usage else None,
                        output_tokens=msg.usage.output_tokens if msg.usage else None,
                        status=status,
                    )
                )
        return _cost.CostReport(rows)

    # -- asking -------------------------------------------------------------

    def submit(
        self, prompt: str, *images: object, model: str | None = None, web_search: bool = False
    ) -> concurrent.futures.Future[Reply]:
        """Start a turn and return at once; the future resolves to the ``Reply``.

        Images that are not yet ``PreparedImage``s are prepared off the engine
        loop.  ``future.message_id`` is the id the answer will have.  Turns of
        one conversation run one after another, in submission order.
        """
        return self._submit(_TurnSpec(prompt, list(images), model, web_search))[0]

    def submit_retry(self, model: str | None = None) -> concurrent.futures.Future[Reply]:
        """Re-run the last turn (same prompt and images, no re-upload); returns at once."""
        self._check_retry_possible()
        return self._submit(_TurnSpec("", [], model, False, retry=True))[0]

    def ask(
        self,
        prompt: str,
        *images: object,
        model: str | None = None,
        web_search: bool = False,
        show: bool | None = None,
    ) -> Reply:
        """Ask and wait for the answer; in a notebook it streams into the cell.

        ``show`` forces the live display on or off (default: on inside a
        Jupyter kernel only).  ``conv.cancel()`` from elsewhere returns the
        partial reply with ``interrupted=True``.  Ctrl-C / the notebook's stop
        button also stops the answer and keeps the partial text in
        ``conv.messages`` (and ``conv.last_reply``), then re-raises
        ``KeyboardInterrupt`` so that Run All stops as the user asked instead
        of starting the next (paid) question.
        """
        self._refuse_engine_thread("ask")
        use = model or self._model
        prepared = self._prepare(images, use)
        return self._wait(_TurnSpec(prompt, list(prepared), model, web_search), show)

    def retry(self, model: str | None = None, *, show: bool | None = None) -> Reply:
        """Re-run the last turn (failed, interrupted or not) without re-uploading."""
        self._refuse_engine_thread("retry")
        self._check_retry_possible()
        return self._wait(_TurnSpec("", [], model, False, retry=True), show)

    def stream(
        self, prompt: str, *images: object, model: str | None = None, web_search: bool = False
    ) -> Iterator[str]:
        """Yield the answer's text as it arrives.

        Leaving the loop early (``break``) stops the answer and keeps the
        partial text; the finished reply is ``conv.last_reply``.
        """
        self._refuse_engine_thread("stream")
        use = model or self._model
        prepared = self._prepare(images, use)
        q: queue.SimpleQueue[object] = queue.SimpleQueue()
        fut, turn = self._submit(_TurnSpec(prompt, list(prepared), model, web_search), q.put)
        fut.add_done_callback(lambda _f: q.put(_DONE))
        try:
            while (item := q.get()) is not _DONE:
                yield str(item)
            fut.result()
        finally:
            if not fut.done():
                self._cancel_turn(turn)
                with contextlib.suppress(BaseException):
                    fut.result(timeout=10)

    async def ask_async(
        self,
        prompt: str,
        *images: object,
        model: str | None = None,
        web_search: bool = False,
        show: bool | None = None,
    ) -> Reply:
        """``await`` the answer on whatever loop the caller runs (the kernel's too).

        Cancelling the awaiting task stops the answer; the partial text stays
        in ``conv.messages`` marked interrupted.
        """
        spec = _TurnSpec(prompt, list(images), model, web_search)
        live = _live_display(show)
        if live is None:
            return await asyncio.wrap_future(self._submit(spec)[0])
        return await self._consume_async(spec, live)

    async def stream_async(
        self, prompt: str, *images: object, model: str | None = None, web_search: bool = False
    ) -> AsyncIterator[str]:
        """``async for`` over the answer's text as it arrives."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[object] = asyncio.Queue()
        fut, turn = self._submit(
            _TurnSpec(prompt, list(images), model, web_search), _threadsafe_put(loop, q)
        )
        fut.add_done_callback(lambda _f: _threadsafe_put(loop, q)(_DONE))
        try:
            while (item := await q.get()) is not _DONE:
                yield str(item)
            await asyncio.wrap_future(fut)
        finally:
            if not fut.done():
                self._cancel_turn(turn)

    async def _consume_async(self, spec: _TurnSpec, live: LiveAnswer) -> Reply:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[object] = asyncio.Queue()
        fut, turn = self._submit(spec, _threadsafe_put(loop, q))
        fut.add_done_callback(lambda _f: _threadsafe_put(loop, q)(_DONE))
        getter: asyncio.Task[object] | None = None
        try:
            while True:
                # One getter survives timeouts, so no item is lost to a cancelled get().
                if getter is None:
                    getter = asyncio.ensure_future(q.get())
                done, _ = await asyncio.wait({getter}, timeout=live.poll_timeout())
                if not done:
                    live.tick()
                    continue
                item, getter = getter.result(), None
                if item is _DONE:
                    break
                live.feed(str(item))
            reply = await asyncio.wrap_future(fut)
        except BaseException as exc:
            if getter is not None:
                getter.cancel()
            if not fut.done():
                self._cancel_turn(turn)
                with contextlib.suppress(BaseException):
                    await asyncio.wrap_future(fut)
            live.abort(self._reply_for(turn.id), exc)
            raise
        return live.finish(reply)

    def _wait(self, spec: _TurnSpec, show: bool | None) -> Reply:
        """Run a turn from a blocking caller, feeding the live display if any."""
        q: queue.SimpleQueue[object] = queue.SimpleQueue()
        fut, turn = self._submit(spec, q.put)
        fut.add_done_callback(lambda _f: q.put(_DONE))
        live = _live_display(show)
        try:
            while True:
                try:
                    item = q.get(timeout=live.poll_timeout() if live else None)
                except queue.Empty:
                    if live is not None:
                        live.tick()
                    continue
                if item is _DONE:
                    break
                if live is not None:
                    live.feed(str(item))
            reply = fut.result()
        except KeyboardInterrupt:
            self._cancel_turn(turn)
            with contextlib.suppress(Exception):
                fut.result(timeout=10)
            if live is not None:
                live.abort(self._reply_for(turn.id), KeyboardInterrupt())
            raise KeyboardInterrupt(
                "visionchat: answer interrupted; the partial text is kept in "
                "conv.messages and conv.last_reply (conv.retry() runs the turn again)."
            ) from None
        except BaseException as exc:
            if live is not None:
                live.abort(self._reply_for(turn.id), exc)
            raise
        return live.finish(reply) if live is not None else reply

    def _reply_for(self, message_id: str) -> Reply | None:
        with self._lock:
            for i, msg in enumerate(self._messages):
                if msg.id == message_id:
                    return Reply._from(msg, self._messages[i - 1] if i else None)
        return None

    def _refuse_engine_thread(self, what: str) -> None:
        if self._engine.in_thread():
            raise VisionChatError(
                f"conv.{what}() blocks, and was called on visionchat's engine thread "
                "(from a listener?); use conv.submit() there instead."
            )

    def _submit(
        self, spec: _TurnSpec, sink: Callable[[str], None] | None = None
    ) -> tuple[concurrent.futures.Future[Reply], _Turn]:
        if not isinstance(spec.prompt, str):
            raise VisionChatError(f"The prompt must be a string, not {type(spec.prompt).__name__}.")
        turn = _Turn(id=_new_id(), spec=spec, sink=sink)
        with self._lock:
            self._turns[turn.id] = turn
        try:
            fut = self._engine.submit(self._run(turn))
        except BaseException:
            with self._lock:
                self._turns.pop(turn.id, None)
            raise
        fut.message_id = turn.id  # type: ignore[attr-defined]
        return fut, turn

    # -- stopping -------------------------------------------------------------

    def cancel(self, message_id: str | None = None) -> bool:
        """Stop the running turn (and any queued ones), keeping the partial answer.

        With ``message_id``, only that turn.  Returns whether anything was
        stopped.  Never blocks; safe from any thread.
        """
        with self._lock:
            turns = [t for t in self._turns.values() if message_id in (None, t.id)]
        for turn in turns:
            self._cancel_turn(turn)
        return bool(turns)

    def _cancel_turn(self, turn: _Turn) -> None:
        self._engine.call_soon(turn.cancel_on_engine)

    # -- the turn itself (engine thread) ------------------------------------

    def _lock_for_loop(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._turn_lock is None or self._turn_lock[0] is not loop:
            self._turn_lock = (loop, asyncio.Lock())
        return self._turn_lock[1]

    async def _run(self, turn: _Turn) -> Reply:
        turn.task = asyncio.current_task()
        try:
            if turn.cancel_requested:
                raise asyncio.CancelledError
            async with self._lock_for_loop():
                return await self._run_locked(turn)
        except asyncio.CancelledError:
            if turn.cancel_requested and not turn.started:
                _uncancel()
                raise TurnCancelledError(
                    "The turn was cancelled before it started; nothing was sent."
                ) from None
            raise
        finally:
            with self._lock:
                self._turns.pop(turn.id, None)

    async def _run_locked(self, turn: _Turn) -> Reply:
        spec = turn.spec
        user, removed = self._open_turn(spec)
        model = spec.model or (user.model if spec.retry else None) or self._model
        info = self.model_info(model)
        if spec.retry:
            images = user.images
        else:
            if spec.images and info is not None and not info.vision:
                raise NotVisionCapableError(
                    f"{model} cannot see images; pick a vision model (conv.models() lists "
                    "them) or ask without images.",
                    code="not_vision_capable",
                )
            images = await self._prepare_on_engine(spec.images, model)
            user.images = images
            user.model = model
        answer = Message(id=turn.id, role="assistant", model=model, streaming=True)
        with self._lock:
            prior = self._messages_before(user)
            if not spec.retry:
                self._messages.append(user)
            self._messages.append(answer)
        turn.started = True
        if removed:
            self._emit(ConversationEvent("changed", message_id=""))

        history: list[HistoryTurn] = []
        history_tokens = 0
        if prior and self._sends_history():
            history, answer.notices, history_tokens = self._plan_context(prior, user, model, info)
            level = logging.INFO if _shows_notices() else logging.WARNING
            for notice in answer.notices:
                _log.log(level, "visionchat: %s", notice)
        answer.estimate = _cost.estimate_turn(
            user.text,
            [(i.width, i.height) for i in images],
            model,
            info,
            history_tokens=history_tokens,
        )
        self._emit(
            ConversationEvent(
                "turn-start", turn.id, message=answer.copy(), user_message=user.copy()
            )
        )
        request = TurnRequest(
            prompt=user.text,
            model=model,
            images=list(images),
            history=history,
            session=self._session,
            web_search=user.web_search,
        )
        started = time.monotonic()
        text = _TextBuffer(answer)
        try:
            async for event in self._provider.stream(request):
                if isinstance(event, TextDelta):
                    if not event.text:
                        continue
                    text.add(event.text)
                    turn.deliver(event.text)
                    if self._listeners:  # no event objects when nobody listens
                        self._emit(ConversationEvent("delta", turn.id, text=event.text))
                elif isinstance(event, UploadProgress):
                    self._emit(
                        ConversationEvent(
                            "upload-progress", turn.id, progress=(event.done, event.total)
                        )
                    )
                elif isinstance(event, TurnResult):
                    answer.model = event.model or model
                    answer.credits = event.credits
                    answer.usage = event.usage
                    answer.record_id = event.record_id
        except asyncio.CancelledError:
            text.flush()
            answer.interrupted = True
            self._settle(turn, answer, started)
            self._emit(ConversationEvent("turn-end", turn.id, message=answer.copy()))
            if turn.cancel_requested:
                _uncancel()
                return Reply._from(answer, user)
            raise
        except Exception as exc:
            text.flush()
            partial = getattr(exc, "partial_text", "")
            if partial and len(partial) > len(answer.text):
                answer.text = partial
            answer.error = str(exc) or type(exc).__name__
            answer.retryable = bool(getattr(exc, "retryable", False))
            self._settle(turn, answer, started)
            self._emit(
                ConversationEvent(
                    "turn-error",
                    turn.id,
                    message=answer.copy(),
                    error=answer.error,
                    retryable=answer.retryable,
                )
            )
            raise
        text.flush()
        self._settle(turn, answer, started)
        self._emit(ConversationEvent("turn-end", turn.id, message=answer.copy()))
        return Reply._from(answer, user)

    def _open_turn(self, spec: _TurnSpec) -> tuple[Message, list[Message]]:
        """The user message of this turn; for a retry, the last one, minus its answers."""
        if not spec.retry:
            user = Message(id=_new_id(), role="user", text=spec.prompt, web_search=spec.web_search)
            return user, []
        with self._lock:
            for i in range(len(self._messages) - 1, -1, -1):
                if self._messages[i].role == "user":
                    user = self._messages[i]
                    removed = self._messages[i + 1 :]
                    del self._messages[i + 1 :]
                    return user, removed
        raise VisionChatError("Nothing to retry yet: ask something first.")

    def _messages_before(self, user: Message) -> list[Message]:
        for i, msg in enumerate(self._messages):
            if msg is user:
                return list(self._messages[:i])
        return list(self._messages)

    async def _prepare_on_engine(self, images: Sequence[object], model: str) -> list[PreparedImage]:
        limits = self._limits(model)
        if all(isinstance(i, PreparedImage) and fits(i.width, i.height, **limits) for i in images):
            return [i for i in images if isinstance(i, PreparedImage)]
        # Decoding and resizing take CPU time; keep the engine loop free for streams.
        return await asyncio.to_thread(_fit, images, limits)

    def _settle(self, turn: _Turn, answer: Message, started: float) -> None:
        turn.flush()  # the caller gets every delta before the turn's result
        answer.duration = time.monotonic() - started
        answer.streaming = False
        # Retired before the final event, so a listener sees ``busy`` right.
        with self._lock:
            self._turns.pop(turn.id, None)

    def _check_retry_possible(self) -> None:
        with self._lock:
            if not any(m.role == "user" for m in self._messages):
                raise VisionChatError("Nothing to retry yet: ask something first.")

    # -- context for backends without server-side history ---------------------

    def _sends_history(self) -> bool:
        """Whether earlier turns go with the next one.

        Always for stateless backends; for a server that keeps history, only
        when this conversation has no server conversation yet although it has
        earlier turns (after a fork, an undo, or loading with another backend).
        """
        return not self._provider.keeps_history or not self._session

    def _plan_context(
        self, prior: Sequence[Message], user: Message, model: str, info: ModelInfo | None
    ) -> tuple[list[HistoryTurn], list[str], int]:
        """Earlier exchanges to send along, trimmed to the model's context budget.

        Failed exchanges are left out.  When everything does not fit, the oldest
        images go first, then the oldest exchanges; each drop is reported as a
        notice on the reply.
        """
        exchanges: list[list[Message]] = []
        current: list[Message] = []
        for msg in prior:
            if msg.role == "user":
                current = [msg]
                exchanges.append(current)
            elif current:
                current.append(msg)
        kept: list[tuple[Message, Message]] = []
        for ex in exchanges:
            answers = [m for m in ex[1:] if not m.error or m.text]
            if answers and not answers[-1].error:
                kept.append((ex[0], answers[-1]))
        vendor = _cost._vendor(model, info)

        def img_tokens(img: PreparedImage) -> int:
            return _cost.image_tokens(img.width, img.height, vendor=vendor)

        images: list[list[PreparedImage]] = [list(q.images) for q, _a in kept]
        texts = [(q.text, a.text) for q, a in kept]

        def total_history() -> int:
            total = 0
            for (q_text, a_text), imgs in zip(texts, images, strict=True):
                total += _cost.text_tokens(q_text) + _cost.text_tokens(a_text)
                total += sum(img_tokens(i) for i in imgs)
            return total

        notices: list[str] = []
        context = info.context_tokens if info is not None else None
        if context:
            budget = context - min(_ANSWER_RESERVE_TOKENS, context // 4)
            budget -= _cost.text_tokens(user.text) + sum(img_tokens(i) for i in user.images)
            dropped_images = 0
            omitted = [0] * len(images)
            for idx in range(len(images)):
                while images[idx] and total_history() > budget:
                    images[idx].pop(0)
                    omitted[idx] += 1
                    dropped_images += 1
            dropped_turns = 0
            while texts and total_history() > budget:
                texts.pop(0)
                images.pop(0)
                omitted.pop(0)
                dropped_turns += 1
            if dropped_images:
                notices.append(
                    f"Left out {dropped_images} earlier image(s) to fit {model}'s context of "
                    f"{context:,} tokens; the model did not see them again this turn."
                )
            if dropped_turns:
                notices.append(
                    f"Left out the {dropped_turns} oldest exchange(s) to fit {model}'s context "
                    f"of {context:,} tokens."
                )
        else:
            omitted = [0] * len(images)
        history: list[HistoryTurn] = []
        for (q_text, a_text), imgs, left_out in zip(texts, images, omitted, strict=True):
            if left_out:
                q_text += f"\n\n[{left_out} image(s) shared here left out to save context]"
            history.append(HistoryTurn("user", q_text, tuple(imgs)))
            history.append(HistoryTurn("assistant", a_text))
        return history, notices, total_history()

    # -- editing ----------------------------------------------------------------

    def _refuse_while_busy(self, what: str) -> None:
        if self._turns:
            raise VisionChatError(
                f"A turn is still running; wait for it or call conv.cancel() before {what}."
            )

    def _forget_server_history(self) -> None:
        # A server that keeps history still remembers what was removed here;
        # start a fresh server conversation and send the history ourselves.
        if self._provider.keeps_history:
            self._session.clear()

    def undo(self) -> list[Message]:
        """Drop the last exchange (the last question and its answer); returns them."""
        with self._lock:
            self._refuse_while_busy("undo()")
            for i in range(len(self._messages) - 1, -1, -1):
                if self._messages[i].role == "user":
                    removed = self._messages[i:]
                    del self._messages[i:]
                    break
            else:
                raise VisionChatError("Nothing to undo: the conversation is empty.")
            self._forget_server_history()
        self._emit(ConversationEvent("changed", message_id=""))
        return removed

    def clear(self) -> None:
        """Forget every message (and the server-side conversation)."""
        with self._lock:
            self._refuse_while_busy("clear()")
            self._messages.clear()
            self._session.clear()
        self._emit(ConversationEvent("changed", message_id=""))

    def fork(self) -> Conversation:
        """An independent copy to branch from; the original is left untouched.

        The copy shares the provider (and so its upload cache), not the
        listeners.  For backends that keep history on the server (1min.ai) the
        copy has no server conversation: its next turn starts a new one, so the
        branches never mix, and carries the earlier turns in
        ``TurnRequest.history`` for the provider to replay.
        """
        with self._lock:
            self._refuse_while_busy("fork()")
            session = {} if self._provider.keeps_history else self._session
            return Conversation._from_parts(
                self._provider, self._key, self._model, self._messages, session
            )

    # -- persistence and export ------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole conversation, images included, to one file (atomically)."""
        from .persistence import save_conversation

        with self._lock:
            messages = [m.copy() for m in self._messages]
            session = dict(self._session)
        return save_conversation(
            path,
            conversation_id=self.id,
            created=self.created,
            model=self._model,
            provider=self.provider_name,
            session=session,
            messages=messages,
            secrets=[self._key] if self._key is not None else [],
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        provider: str | Provider | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        api: str = "current",
    ) -> Conversation:
        """Read a saved conversation; it continues with the same kind of backend.

        ``provider`` defaults to the one the file was saved with (key and URL
        from the arguments or the environment, as for a new conversation).
        """
        from .persistence import load_conversation

        saved = load_conversation(path)
        if provider is None:
            provider = saved.provider if saved.provider in _ALIASES else None
        prov, key = resolve_provider(provider, api_key=api_key, base_url=base_url, api=api)
        session = saved.session if getattr(prov, "name", None) == saved.provider else {}
        conv = cls._from_parts(prov, key, saved.model, saved.messages, session)
        conv.id = saved.conversation_id
        conv.created = saved.created
        return conv

    def restore(self, path: str | os.PathLike[str]) -> None:
        """Replace this conversation's content with a saved file's, in place.

        Views attached to this object (widgets) follow, through a ``changed`` event.
        """
        from .persistence import load_conversation

        saved = load_conversation(path)
        with self._lock:
            self._refuse_while_busy("restore()")
            self._messages = [m.copy() for m in saved.messages]
            same = saved.provider == self.provider_name
            self._session = dict(saved.session) if same else {}
            self._model = saved.model
            self.id = saved.conversation_id
            self.created = saved.created
        self._emit(ConversationEvent("changed", message_id=""))

    def to_markdown(self, *, images: Literal["thumbnail", "full", "none"] = "thumbnail") -> str:
        """The transcript as Markdown, images inline as data URLs."""
        from .export import to_markdown

        return to_markdown(self.messages, title=self._title(), images=images)

    def to_html(self, *, images: Literal["thumbnail", "full", "none"] = "full") -> str:
        """A self-contained HTML page of the transcript (images inline, output sanitized)."""
        from .export import to_html

        return to_html(self.messages, title=self._title(), images=images)

    def _title(self) -> str:
        first = next((m.text for m in self.messages if m.role == "user" and m.text), "")
        first = " ".join(first.split())
        return first[:80] or "visionchat conversation"


def _threadsafe_put(
    loop: asyncio.AbstractEventLoop, q: asyncio.Queue[object]
) -> Callable[[object], None]:
    def put(item: object) -> None:
        # RuntimeError: the caller's loop is closed, nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(q.put_nowait, item)

    return put


class _ImageLimits(TypedDict, total=False):
    max_edge: int | None
    max_pixels: int | None
    max_short_edge: int | None


def image_limits(info: ModelInfo | None) -> _ImageLimits:
    """What a model keeps of an image, as ``prepare_image`` takes it (none when unknown)."""
    if info is None:
        return {}
    return {
        "max_edge": info.max_image_edge,
        "max_pixels": info.max_image_pixels,
        "max_short_edge": info.max_image_short_edge,
    }


def fit_image(image: object, limits: _ImageLimits) -> PreparedImage:
    """``image`` prepared for ``limits``; one prepared earlier is kept when it already fits."""
    if isinstance(image, PreparedImage) and fits(image.width, image.height, **limits):
        return image
    return prepare_image(image, **limits)


def _fit(images: Sequence[object], limits: _ImageLimits) -> list[PreparedImage]:
    return [fit_image(img, limits) for img in images]


def _shows_notices() -> bool:
    """In a kernel the reply's output and the widget show a turn's notices.

    Logging them at warning level there too would print each one a second time
    (Python's last-resort handler writes warnings to stderr); in a script the
    log is the only place a person sees them.
    """
    if "IPython" not in sys.modules:
        return False
    from ._notebook_display import in_kernel

    return in_kernel()


def _live_display(show: bool | None) -> LiveAnswer | None:
    """The notebook's streaming display, when in a Jupyter kernel (or forced)."""
    if show is False or "IPython" not in sys.modules:
        return None
    from ._notebook_display import LiveAnswer, in_kernel

    if show is None and not in_kernel():
        return None
    return LiveAnswer()


def _catalog_info(model: str) -> ModelInfo | None:
    from .catalog import get_model

    return get_model(model)


def _catalog_models() -> list[ModelInfo]:
    from .catalog import vision_models

    return vision_models()
