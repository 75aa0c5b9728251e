"""A SQLite store whose file is moved, replaced or deleted while open fails closed (G1, G5).

An open SQLite connection keeps writing to its file after the path stops naming it (an
operator's `mv`, a backup restored over it, a cleanup that deletes it): every claim and every
answer went to a file no process would open again, and the next process on the path, finding
no claim, sent the decision's order a second time. Each write transaction now checks that the
path still names the file its connection opened. Real parts: a SQLite file, the gateway, the
paper broker; the file is taken away between calls and between the POST and its recording.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tradeguard import OrderGateway, PaperBroker, crashpoints
from tradeguard.errors import OutcomeUnknown, StoreError, UnrecordedOrder
from tradeguard.execution import Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore
from tradeguard.testing import RecordingBroker


def _delete(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _move_away(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db}{suffix}").exists():
            os.replace(f"{db}{suffix}", f"{db}.moved{suffix}")


def _replace_with_a_copy(db: Path) -> None:
    shutil.copy(db, f"{db}.copy")  # a restore: the same bytes, another file
    os.replace(f"{db}.copy", db)


TAKE_AWAY: dict[str, Callable[[Path], None]] = {
    "deleted": _delete,
    "moved": _move_away,
    "replaced": _replace_with_a_copy,
}


@pytest.fixture
def bot(tmp_path: Path) -> tuple[Path, RecordingBroker, OrderGateway]:
    db = tmp_path / "claims.db"
    store = ClaimStore(f"sqlite:///{db}")
    broker = RecordingBroker(PaperBroker(prices=FixedPrices({"SPY": "500"})))
    gateway = OrderGateway(broker, store, agent_id="bot")
    assert gateway.enter("SPY", qty=1, intent="first").outcome is Outcome.SUBMITTED
    return db, broker, gateway


@pytest.mark.parametrize("how", sorted(TAKE_AWAY))
def test_a_decision_after_the_file_went_away_is_refused_and_nothing_is_sent(
    bot: tuple[Path, RecordingBroker, OrderGateway], how: str
) -> None:
    db, broker, gateway = bot
    TAKE_AWAY[how](db)

    said = "replaced by another file" if how == "replaced" else "moved or deleted"
    with pytest.raises(StoreError, match=f"the file was {said} while the store was open"):
        gateway.enter("SPY", qty=1, intent="second")

    assert len(broker.asked(symbol="SPY")) == 1  # the first decision's order only (G5)
    gateway.store.close()


@pytest.mark.parametrize("how", ["deleted", "moved"])
def test_a_store_whose_file_is_gone_stays_refused(
    bot: tuple[Path, RecordingBroker, OrderGateway], how: str
) -> None:
    """No connection writes to the old file again; a new one finds no store at the path."""
    db, broker, gateway = bot
    TAKE_AWAY[how](db)
    for _ in range(3):
        with pytest.raises(StoreError):
            gateway.enter("SPY", qty=1, intent="second")
    assert len(broker.asked(symbol="SPY")) == 1
    gateway.store.close()


def test_a_file_taken_away_between_the_post_and_its_recording_leaves_the_order_unknown_not_lost(
    bot: tuple[Path, RecordingBroker, OrderGateway],
) -> None:
    """The answer cannot be recorded: the caller is told its order may exist (G2, G5), never that
    it went through, and its retry sends nothing. Recorded in the moved file, the answer and the
    claim would be where no process on the path looks."""
    db, broker, gateway = bot

    def take_away(point: str) -> None:
        if point == "after_post":
            crashpoints.set_hook(None)
            _move_away(db)

    crashpoints.set_hook(take_away)
    try:
        with pytest.raises(OutcomeUnknown):
            gateway.enter("SPY", qty=1, intent="second")
    finally:
        crashpoints.set_hook(None)
    assert len(broker.asked(symbol="SPY")) == 2
    # The retry sends nothing, and says what this gateway knows: the decision's order went out
    # unrecorded (audit37 D2), not that nothing was recorded as if nothing had been sent.
    with pytest.raises(UnrecordedOrder, match="may be at the broker"):
        gateway.enter("SPY", qty=1, intent="second")
    assert len(broker.asked(symbol="SPY")) == 2
    gateway.store.close()


def test_a_store_on_a_file_that_stays_put_is_unaffected(tmp_path: Path) -> None:
    db = tmp_path / "claims.db"
    with ClaimStore(f"sqlite:///{db}") as store:
        gateway = OrderGateway(PaperBroker(prices=FixedPrices({"SPY": "500"})), store, agent_id="bot")
        results = [gateway.enter("SPY", qty=1, intent=f"d{i}").outcome for i in range(5)]
        assert results == [Outcome.SUBMITTED] * 5
        assert store.position("bot", "SPY").qty == 5
