"""The one small contract every backend fulfils.

A provider is async at its core and is driven from the engine's event loop.
It knows nothing about notebooks, widgets or how a conversation is stored: it
uploads prepared images and streams one turn as a sequence of events.  The
``Conversation`` owns everything else (history, retries of whole turns, cost
accounting, persistence), so a new backend is one module and one class.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..images import PreparedImage

__all__ = [
    "HistoryTurn",
    "ModelInfo",
    "Provider",
    "StreamEvent",
    "TextDelta",
    "TurnRequest",
    "TurnResult",
    "UploadProgress",
    "Usage",
]


@dataclass(frozen=True)
class ModelInfo:
    """What is known about one model: from a backend's listing, the catalog, or both."""

    id: str
    name: str = ""
    vendor: str = ""  # who makes the model: "openai", "anthropic", "google", ...
    vision: bool = True
    context_tokens: int | None = None
    # Prices as published for the backend, per 1,000 tokens (the 1min.ai seed's unit).
    input_price: float | None = None
    output_price: float | None = None
    # What the model keeps of an image (the service downscales the rest away), so
    # what is worth sending: longest edge, area, and shortest edge in pixels.
    max_image_edge: int | None = None
    max_image_pixels: int | None = None
    max_image_short_edge: int | None = None
    available: bool = True


@dataclass(frozen=True)
class HistoryTurn:
    """A finished earlier message, for backends that do not keep history themselves."""

    role: Literal["user", "assistant"]
    text: str
    images: tuple[PreparedImage, ...] = ()


@dataclass
class TurnRequest:
    """Everything one turn needs.

    ``session`` is a provider-owned dictionary that the conversation stores and
    saves with itself (for 1min.ai: the server-side conversation id), so a
    reloaded conversation continues where it stopped.  Providers mutate it in
    place.  It must hold only JSON-serialisable values and never a secret.
    """

    prompt: str
    model: str
    images: Sequence[PreparedImage] = ()
    history: Sequence[HistoryTurn] = ()
    session: dict[str, Any] = field(default_factory=dict)
    web_search: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TextDelta:
    """New answer text, in order; concatenating every delta gives the answer."""

    text: str


@dataclass(frozen=True)
class UploadProgress:
    """Images uploaded so far for this turn (for progress displays)."""

    done: int
    total: int


@dataclass(frozen=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class TurnResult:
    """The last event of a successful turn: who answered and what it cost."""

    model: str
    credits: float | None = None
    usage: Usage | None = None
    record_id: str | None = None


StreamEvent = TextDelta | UploadProgress | TurnResult


@runtime_checkable
class Provider(Protocol):
    """A backend.  See the module docstring for the division of labour."""

    #: short name used in reprs and saved files: "1min", "openai", "offline"
    name: str
    #: True when the server keeps the history (the client sends only the new turn)
    keeps_history: bool

    def model_info(self, model: str) -> ModelInfo | None:
        """What the provider knows of ``model`` without a network call."""
        ...

    async def list_models(self) -> list[ModelInfo]:
        """The models the backend offers now (falls back to the catalog when offline)."""
        ...

    async def upload(self, image: PreparedImage) -> str:
        """Make ``image`` available to the backend and return its reference."""
        ...

    def stream(self, request: TurnRequest) -> AsyncIterator[StreamEvent]:
        """Run one turn, yielding text deltas and ending with a ``TurnResult``.

        Raises an ``APIError`` subclass on failure; text already yielded stays
        valid.  Cancelling the iteration closes the underlying request.
        """
        ...

    async def aclose(self) -> None:
        """Release connections.  The provider is unusable afterwards."""
        ...
