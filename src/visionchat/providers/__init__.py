"""Backends behind one small protocol (see ``base``)."""

from .base import (
    HistoryTurn,
    ModelInfo,
    Provider,
    StreamEvent,
    TextDelta,
    TurnRequest,
    TurnResult,
    UploadProgress,
    Usage,
)

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
