"""`SessionReader.timed`: the reader's events, each with its time in UTC."""

from __future__ import annotations

import io
import json
from datetime import UTC

import pytest

from tradeguard import SessionFormatError, open_session

HEADER = {"type": "session", "version": 2, "start": "2026-05-21T09:30:00-04:00"}


def _file(*events: dict[str, object]) -> io.StringIO:
    return io.StringIO("\n".join(json.dumps(e) for e in (HEADER, *events)) + "\n")


def test_timed_hands_on_the_same_events_with_their_times_in_utc() -> None:
    events = [
        {"type": "price", "t": "2026-05-21T09:30:01-04:00", "symbol": "SPY", "price": "1"},
        {"type": "attempt", "t": "2026-05-21T13:30:01+00:00", "decision": "d", "attempt": 1,
         "kind": "entry", "symbol": "SPY", "side": "buy", "qty": 1},
        {"type": "answer", "t": "2026-05-21T09:30:02-04:00", "decision": "d", "attempt": 1,
         "result": "timeout"},
        {"type": "resolution", "t": "2026-05-21T09:30:03-04:00", "decision": "d", "attempt": 1,
         "placed": True, "symbol": "SPY", "filled_qty": "1", "filled_avg_price": "1.5"},
        {"type": "end", "t": "2026-05-21T09:31:00-04:00"},
    ]  # fmt: skip
    plain = list(open_session(_file(*events)))
    timed = list(open_session(_file(*events)).timed())
    assert [(line, event) for line, event, _ in timed] == plain
    assert len(plain) == 6  # the resolution's price follows the lost answer
    for _, event, at in timed:
        assert at == event.t and at.tzinfo is UTC


def test_an_event_before_the_previous_one_names_both_times_as_written() -> None:
    events = [
        {"type": "price", "t": "2026-05-21T09:30:02-04:00", "symbol": "SPY", "price": "1"},
        {"type": "price", "t": "2026-05-21T13:30:01+00:00", "symbol": "SPY", "price": "1"},
    ]
    with pytest.raises(SessionFormatError, match=r"time 2026-05-21T13:30:01\+00:00 is before the previous "
                       r"event's 2026-05-21T09:30:02-04:00"):  # fmt: skip
        list(open_session(_file(*events)).timed())
