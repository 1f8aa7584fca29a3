"""visionchat: talk with AI vision models about the images in your kernel.

The core (images, conversations, providers) imports nothing from IPython or the
widget stack; ``ChatWidget`` and ``chat`` are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    "ChatWidget",
    "Conversation",
    "ConversationEvent",
    "ConversationFileError",
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
    "chat",
    "load_ipython_extension",
    "prepare_image",
]


def __getattr__(name: str) -> Any:
    if name in ("ChatWidget", "chat"):
        from . import widget

        return getattr(widget, name)
    raise AttributeError(f"module 'visionchat' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext visionchat``: registers the ``%%vision`` and ``%vision`` magics."""
    from . import magics

    magics.load_ipython_extension(ipython)
