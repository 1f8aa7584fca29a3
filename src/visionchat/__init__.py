"""visionchat: talk with AI vision models about the images in your kernel."""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConversationFileError",
    "ImageError",
    "ModelNotFoundError",
    "NotVisionCapableError",
    "OutOfCreditsError",
    "PreparedImage",
    "RateLimitError",
    "ServerError",
    "StreamInterruptedError",
    "TurnCancelledError",
    "VisionChatError",
    "__version__",
    "prepare_image",
]
