"""Audit queries: filters, keyset paging, counts, and the DataFrame and CSV exports."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from tests.mothers import make_intent, make_spec
from tradeguard.clock import ManualClock
from tradeguard.domain import AuditAction, AuditRecord, Side
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import AuditQuery, ClaimStore

START = ManualClock().now()


@pytest.fixture
def store(store_url: str) -> Iterator[ClaimStore]:
    """A store with a small, known history, one second between records."""
    clock = ManualClock(START)
    with ClaimStore(store_url, clock=clock) as s:
        a = s.claim(make_intent("a-entry", agent="a"), make_spec(5), owner="w").claim  # t0 claim
        clock.advance(1)
        s.transition(a, ClaimState.FILLED, reason="filled", filled_qty=Decimal(5))  # t1 ledger + transition
        clock.advance(1)
        b = s.claim(make_intent("b-exit", agent="b", kind=Kind.EXIT, side=Side.SELL, symbol="SQQQ"),
                    make_spec(2), owner="w").claim  # t2 claim  # fmt: skip
        clock.advance(1)
        s.transition(b, ClaimState.REJECTED, reason="insufficient qty")  # t3
        clock.advance(1)
        s.record_skip(b, agent_id="b", reason="duplicate of a rejected exit")  # t4
        clock.advance(1)
        s.audit(AuditAction.RECONCILE, agent_id="a", reason="all clear", symbol="QQQ")  # t5
        yield s


def ids(records: list[AuditRecord]) -> list[int]:
    return [r.id for r in records]


def everything(store: ClaimStore) -> list[AuditRecord]:
    return list(store.audit_records())


def test_the_history_is_in_order_with_times_and_actions(store: ClaimStore) -> None:
    recs = everything(store)
    assert [(r.action.value, int((r.at - START).total_seconds())) for r in recs] == [
        ("claim", 0), ("ledger", 1), ("transition", 1), ("claim", 2), ("transition", 3), ("skip", 4),
        ("reconcile", 5),
    ]  # fmt: skip
    assert ids(recs) == sorted(ids(recs))
    assert all(r.at.tzinfo is not None for r in recs)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (AuditQuery(agent_id="b"), ["claim", "transition", "skip"]),
        (AuditQuery(actions=("skip", "reconcile")), ["skip", "reconcile"]),
        (AuditQuery(kind="exit"), ["claim", "transition", "skip"]),
        (AuditQuery(state="FILLED"), ["transition"]),
        (AuditQuery(symbol="QQQ"), ["claim", "ledger", "transition", "reconcile"]),
        (AuditQuery(since=START + timedelta(seconds=1), until=START + timedelta(seconds=3)),
         ["ledger", "transition", "claim"]),
        (AuditQuery(agent_id="a", actions=("transition",), state="FILLED", symbol="QQQ"), ["transition"]),
        (AuditQuery(agent_id="nobody"), []),
    ],
)  # fmt: skip
def test_filters(store: ClaimStore, query: AuditQuery, expected: list[str]) -> None:
    assert [r.action.value for r in store.audit_records(query)] == expected
    assert store.audit_count(query) == len(expected)


def test_filter_by_client_order_id(store: ClaimStore) -> None:
    [b] = store.list_claims(agent_id="b")
    assert [r.action.value for r in store.audit_records(AuditQuery(client_order_id=b.client_order_id))] == [
        "claim", "transition", "skip",
    ]  # fmt: skip


def test_time_range_is_since_inclusive_until_exclusive(store: ClaimStore) -> None:
    at: datetime = START + timedelta(seconds=2)
    assert [r.action.value for r in store.audit_records(AuditQuery(since=at, until=at))] == []
    assert [
        r.action.value
        for r in store.audit_records(AuditQuery(since=at, until=at + timedelta(microseconds=1)))
    ] == ["claim"]


def test_keyset_paging_visits_every_record_once(store: ClaimStore) -> None:
    pages, after = [], 0
    while page := store.audit_page(after_id=after, limit=3):
        pages.append(ids(page))
        after = page[-1].id
    assert [len(p) for p in pages] == [3, 3, 1]
    assert list(itertools.chain(*pages)) == ids(everything(store))
    assert ids(list(store.audit_records(page_size=2))) == ids(everything(store))


def test_dataframe_export(store: ClaimStore) -> None:
    frame = store.audit_dataframe(AuditQuery(agent_id="a"))
    assert list(frame.columns) == list(AuditRecord.__dataclass_fields__)
    assert list(frame["action"]) == ["claim", "ledger", "transition", "reconcile"]
    assert str(frame["at"].dt.tz) == "UTC"
    assert frame["at"].iloc[0] == pd.Timestamp(START)
    assert json.loads(frame["detail"].iloc[0])["intent"] == "a-entry"
    assert store.audit_dataframe(AuditQuery(agent_id="nobody")).empty


def test_csv_export_round_trips(store: ClaimStore, tmp_path: Path) -> None:
    path = tmp_path / "audit.csv"
    assert store.export_audit_csv(path) == 7
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row, rec in zip(rows, everything(store), strict=True):
        assert int(row["id"]) == rec.id
        assert datetime.fromisoformat(row["at"]) == rec.at
        assert row["action"] == rec.action.value and row["reason"] == rec.reason
        assert (json.loads(row["detail"]) if row["detail"] else {}) == rec.detail
        assert (row["client_order_id"] or None) == rec.client_order_id
