"""visionchat: talk with AI vision models about the images in your kernel.

The core (images, conversations, providers) imports nothing from IPython or the
widget stack; ``ChatWidget`` and ``chat`` are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .batch import BatchError, BatchInterrupted, BatchProgress, CostLimitError, batch
from .conversation import Conversation, ConversationEvent, Message, Reply
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConversationFileError,
    ImageError,
    ModelNotFoundError,
    NotVisionCapableError,
    OutOfCreditsError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
    TurnCancelledError,
    VisionChatError,
)
from .images import PreparedImage, prepare_image

if TYPE_CHECKING:
    from .widget import ChatWidget, chat

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchError",
    "BatchInterrupted",
    "BatchProgress",
    "ChatWidget",
    "Conversation",
    "ConversationEvent",
    "ConversationFileError",
    "CostLimitError",
    "ImageError",
    "Message",
    "ModelNotFoundError",
    "NotVisionCapableError",
    "OutOfCreditsError",
    "PreparedImage",
    "RateLimitError",
    "Reply",
    "ServerError",
    "StreamInterruptedError",
    "TurnCancelledError",
    "VisionChatError",
    "__version__",
    "ask",
    "batch",
    "chat",
    "load_ipython_extension",
    "prepare_image",
]


def ask(
    *images_and_question: object,
    model: str | None = None,
    provider: str | None = None,
    web_search: bool = False,
) -> Reply:
    """Ask one question about some images, in one line: ``ask(fig, "What is odd here?")``.

    The question is the last argument; everything before it is an image (a
    figure you are still drawing works: it is rendered as it is now).  Each call
    is a fresh conversation; keep a ``Conversation`` for follow-ups.
    """
    if not images_and_question or not isinstance(images_and_question[-1], str):
        raise VisionChatError(
            "ask() takes the images first and the question last, e.g. "
            'visionchat.ask(fig, "What is odd in this plot?")'
        )
    *images, question = images_and_question
    kw: dict[str, Any] = {"provider": provider}
    if model:
        kw["model"] = model
    return Conversation(**kw).ask(str(question), *images, web_search=web_search)


def __getattr__(name: str) -> Any:
    if name in ("ChatWidget", "chat"):
        from . import widget

        return getattr(widget, name)
    raise AttributeError(f"module 'visionchat' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext visionchat``: registers the ``%%vision`` and ``%vision`` magics."""
    from . import magics

    magics.load_ipython_extension(ipython)
