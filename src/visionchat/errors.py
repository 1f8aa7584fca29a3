"""Every error visionchat raises, in one small hierarchy.

Users catch ``VisionChatError`` for anything from this package, or one of the
subclasses when they want to react differently (wait and retry on
``RateLimitError``, fix the key on ``AuthenticationError``...).  Every message
says what went wrong *and what to do next*, and never contains an API key.
"""

from __future__ import annotations

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
    "RateLimitError",
    "ServerError",
    "StreamInterruptedError",
    "TurnCancelledError",
    "VisionChatError",
]


class VisionChatError(Exception):
    """Base class of every error raised by visionchat."""


class ImageError(VisionChatError, ValueError):
    """An input could not be turned into an image to send.

    A ``ValueError`` too, so code that already guards conversions with
    ``except ValueError`` keeps working.
    """


class ConversationFileError(VisionChatError, ValueError):
    """A saved conversation file is missing, corrupted, or not a visionchat file."""


class TurnCancelledError(VisionChatError):
    """A turn was stopped by the user before the answer was complete.

    ``partial_text`` holds what had arrived; the conversation keeps it too.
    """

    def __init__(self, message: str, *, partial_text: str = "") -> None:
        super().__init__(message)
        self.partial_text = partial_text


class APIError(VisionChatError):
    """A backend answered with an error, or could not be reached.

    ``status`` is the HTTP status when there was one, ``retryable`` tells whether
    the same request may succeed later, and ``partial_text`` keeps any answer text
    that had streamed in before the failure.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        partial_text: str = "",
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.partial_text = partial_text
        if retryable is not None:
            self.retryable = retryable


class AuthenticationError(APIError):
    """The API key is missing, wrong or revoked."""


class RateLimitError(APIError):
    """Too many requests; ``retry_after`` is the server's hint in seconds, if any."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ModelNotFoundError(APIError):
    """The backend does not know the requested model."""


class NotVisionCapableError(APIError):
    """Images were attached for a model that cannot see images.

    Raised before anything is uploaded, so nothing is billed.
    """


class BadRequestError(APIError):
    """The backend rejected the request as malformed or unsupported."""


class OutOfCreditsError(APIError):
    """The account has no credits (or quota) left."""


class ServerError(APIError):
    """The backend, or a proxy in front of it, failed (5xx or an HTML error page)."""

    retryable = True


class APIConnectionError(APIError):
    """The backend could not be reached (DNS, refused, reset before an answer)."""

    retryable = True


class APITimeoutError(APIError):
    """The backend did not answer, or stopped sending, within the timeout."""

    retryable = True


class StreamInterruptedError(APIError):
    """A streamed answer broke off after it had started.

    Never retried automatically: re-sending would bill the turn twice.  The text
    received so far is in ``partial_text`` and stays in the conversation.
    """

    retryable = True
