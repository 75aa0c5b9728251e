"""Recorded sessions: the versioned JSON Lines format, a streaming reader, a writer, and the recorder.

A session is what a bot did in one stretch of trading, event by event: its order attempts
(retries visible as attempts of one decision), the answers it got, prices and positions,
things done to the account outside it, and its own notes. `sessions/README.md` in the
repository documents the format; `replay/` drives sessions through the guard in three modes.
"""

from tradeguard.sessions.model import (
    EVENT_TYPES,
    RESOLUTION_HORIZON_SECS,
    SESSION_VERSION,
    SUPPORTED_VERSIONS,
    AnswerEvent,
    AttemptEvent,
    CancelEvent,
    EndEvent,
    Event,
    ExternalEvent,
    NoteEvent,
    PositionEvent,
    PriceEvent,
    ReplaceEvent,
    ResolutionEvent,
    SessionHeader,
)
from tradeguard.sessions.reader import SessionReader, open_session
from tradeguard.sessions.recorder import NullRecorder, Recorder, RecordTarget, open_recorder
from tradeguard.sessions.recording_broker import SessionRecordingBroker
from tradeguard.sessions.writer import SessionWriter

__all__ = [
    "EVENT_TYPES",
    "RESOLUTION_HORIZON_SECS",
    "SESSION_VERSION",
    "SUPPORTED_VERSIONS",
    "AnswerEvent",
    "AttemptEvent",
    "CancelEvent",
    "EndEvent",
    "Event",
    "ExternalEvent",
    "NoteEvent",
    "NullRecorder",
    "PositionEvent",
    "PriceEvent",
    "RecordTarget",
    "Recorder",
    "ReplaceEvent",
    "ResolutionEvent",
    "SessionHeader",
    "SessionReader",
    "SessionRecordingBroker",
    "SessionWriter",
    "open_recorder",
    "open_session",
]
