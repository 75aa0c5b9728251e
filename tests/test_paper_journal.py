"""The paper state file's journal: replay equals the live account, torn and corrupt lines, migration.

Every acknowledged change is in the file before the answer: a process killed mid-stream (a real
paper-server subprocess, SIGKILL) restarts with every acknowledged order and position.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import pytest
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradeguard.clock import ManualClock
from tradeguard.domain import OrderClass, OrderType, ReplaceRequest
from tradeguard.domain import TimeInForce as Tif
from tradeguard.errors import BrokerUnavailable, ConfigError, OrderRejected
from tradeguard.paper import PaperBroker
from tradeguard.paper import statefile as statefile_module
from tradeguard.testing import alpaca_client, make_request

T0 = datetime(2026, 5, 21, 13, 30, tzinfo=UTC)


def lines(path: Path) -> list[str]:
    return path.read_text().split("\n")


def same_account(live: PaperBroker, again: PaperBroker) -> None:
    assert again.orders() == live.orders()
    assert again.list_positions() == live.list_positions()
    assert {**again.account(), "created_at": None} == {**live.account(), "created_at": None}  # when made
    assert again.price("SPY") == live.price("SPY")


def reloaded(path: Path, clock: ManualClock, tmp: Path) -> PaperBroker:
    """Load a copy of the file (loading folds the journal in; the live broker keeps its own)."""
    copy = tmp / "copy.json"
    shutil.copyfile(path, copy)
    return PaperBroker(state_path=copy, clock=clock, max_fill_qty=3)


def _operation(broker: PaperBroker, op: tuple[str, int, int], n: int) -> None:
    kind, a, b = op
    price = Decimal(90 + a)
    open_ids = [o.id for o in broker.list_orders(status="open")]
    cid = f"c{n}"
    if kind == "market":
        broker.submit_order(make_request("SPY", "buy" if b % 2 else "sell", 1 + b % 5, client_order_id=cid))
    elif kind == "limit":
        side = "buy" if b % 2 else "sell"
        req = make_request(
            "SPY", side, 1 + b % 4, client_order_id=cid, order_type=OrderType.LIMIT, limit_price=price
        )
        broker.submit_order(req)
    elif kind == "bracket":
        req = make_request(
            "SPY",
            "buy",
            1 + b % 6,
            client_order_id=cid,
            order_class=OrderClass.BRACKET,
            time_in_force=Tif.GTC,
            take_profit_limit_price=price + 10,
            stop_loss_stop_price=price - 10,
        )
        broker.submit_order(req)
    elif kind == "oco":
        req = make_request(
            "SPY",
            "sell",
            1,
            client_order_id=cid,
            order_class=OrderClass.OCO,
            order_type=OrderType.LIMIT,
            time_in_force=Tif.GTC,
            limit_price=price + 20,
            take_profit_limit_price=price + 20,
            stop_loss_stop_price=price - 20,
        )
        broker.submit_order(req)
    elif kind == "trail":
        req = make_request(
            "SPY",
            "sell",
            1,
            client_order_id=cid,
            order_type=OrderType.TRAILING_STOP,
            time_in_force=Tif.GTC,
            trail_price=Decimal(1 + b % 3),
        )
        broker.submit_order(req)
    elif kind == "price":
        broker.set_price("SPY", price if b % 5 else None)
    elif kind == "replace" and open_ids:
        order = broker.get_order(open_ids[b % len(open_ids)])
        assert order is not None
        if order.order_type is OrderType.TRAILING_STOP:
            broker.replace_order(order.id, ReplaceRequest(trail=Decimal(2)))
        elif order.order_type is OrderType.LIMIT:
            broker.replace_order(order.id, ReplaceRequest(limit_price=price))
        else:
            broker.replace_order(order.id, ReplaceRequest(stop_price=price - 15))
    elif kind == "cancel" and open_ids:
        broker.cancel_order(open_ids[b % len(open_ids)])
    elif kind == "cancel_all":
        broker.cancel_all_orders()
    elif kind == "close":
        broker.close_position("SPY")
    elif kind == "step":
        broker.step()


KINDS = [
    "market",
    "limit",
    "bracket",
    "oco",
    "trail",
    "price",
    "replace",
    "cancel",
    "cancel_all",
    "close",
    "step",
]
OPERATIONS = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 20), st.integers(0, 30)), min_size=1, max_size=25
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_replaying_the_journal_gives_the_live_account_after_every_change(
    operations: list[tuple[str, int, int]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("journal")
    path = tmp / "paper.json"
    clock = ManualClock(T0)
    live = PaperBroker(state_path=path, clock=clock, max_fill_qty=3, cash=10_000_000)
    live.set_price("SPY", 100)
    for n, op in enumerate(operations):
        clock.advance(1)
        with contextlib.suppress(OrderRejected):
            _operation(live, op, n)
        same_account(live, reloaded(path, clock, tmp))
    live.close()
    assert len(lines(path)) == 2  # one snapshot line and its newline
    same_account(live, PaperBroker(state_path=path, clock=clock, max_fill_qty=3))


def test_replacing_a_leg_of_a_filled_bracket_journals_the_parent_too(tmp_path: Path) -> None:
    # The filled parent is no open order, yet the replacement renames the leg in its leg_ids.
    path, clock = tmp_path / "paper.json", ManualClock(T0)
    live = PaperBroker(state_path=path, clock=clock, max_fill_qty=3)
    live.set_price("SPY", 100)
    bracket = live.submit_order(
        make_request(
            "SPY",
            qty=2,
            client_order_id="entry",
            order_class=OrderClass.BRACKET,
            time_in_force=Tif.GTC,
            take_profit_limit_price=Decimal(110),
            stop_loss_stop_price=Decimal(90),
        )
    )
    take_profit = next(leg for leg in bracket.legs if leg.order_type is OrderType.LIMIT)
    new = live.replace_order(take_profit.id, ReplaceRequest(limit_price=Decimal(111)))
    again = reloaded(path, clock, tmp_path)
    parent = again.get_order(bracket.id)
    assert parent is not None and new.id in [leg.id for leg in parent.legs]
    same_account(live, again)


def test_a_change_is_one_appended_line_and_the_first_change_a_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "paper.json"
    broker = PaperBroker(state_path=path)
    broker.submit_order(make_request("SPY", client_order_id="a"))
    assert len(lines(path)) == 2
    snapshot = path.read_text()
    broker.submit_order(make_request("SPY", client_order_id="b"))
    broker.submit_order(make_request("SPY", client_order_id="c"))
    text = path.read_text()
    assert text.startswith(snapshot) and len(lines(path)) == 4 and text.endswith("\n")
    assert '"client_order_id":"b"' in lines(path)[1]


def test_a_torn_last_line_is_dropped_with_a_warning_and_nothing_acknowledged_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "paper.json"
    broker = PaperBroker(state_path=path)
    for cid in "abc":
        broker.submit_order(make_request("SPY", client_order_id=cid))
    torn = '{"cash":"1","orders":[{"id":"x'  # a crash mid-write of the next line
    with path.open("a") as handle:
        handle.write(torn)
    with caplog.at_level(logging.WARNING, logger="tradeguard.paper"):
        again = PaperBroker(state_path=path)
    assert f"paper state {path}: dropped a torn last line ({len(torn)} bytes)" in caplog.text
    assert [o.client_order_id for o in again.orders()] == ["a", "b", "c"]
    assert again.get_position("SPY") == broker.get_position("SPY")
    assert len(lines(path)) == 2 and torn not in path.read_text()  # folded into one snapshot
    again.submit_order(make_request("SPY", client_order_id="d"))
    assert [o.client_order_id for o in PaperBroker(state_path=path).orders()] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("where", ["middle", "last, with its newline"])
def test_a_corrupt_line_is_an_error_naming_file_and_line(tmp_path: Path, where: str) -> None:
    path = tmp_path / "paper.json"
    broker = PaperBroker(state_path=path)
    for cid in "abc":
        broker.submit_order(make_request("SPY", client_order_id=cid))
    kept = lines(path)  # snapshot, b, c, ""
    bad = '{"cash": oops}'
    if where == "middle":
        kept[1] = bad
        number = 2
    else:
        kept[-1:] = [bad, ""]
        number = 4
    path.write_text("\n".join(kept))
    with pytest.raises(ConfigError) as info:
        PaperBroker(state_path=path)
    assert str(info.value).startswith(f"paper state {path}:{number}: not a journal entry: JSONDecodeError(")


def test_a_file_written_by_earlier_versions_loads_as_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "paper.json"
    broker = PaperBroker(state_path=path, cash=5000)
    broker.submit_order(make_request("SPY", qty=3, client_order_id="old"))
    broker.close()
    # Earlier versions wrote `PaperState.to_text()` as the whole file: one document, no newline.
    path.write_text(path.read_text().rstrip("\n"))
    again = PaperBroker(state_path=path)
    assert again.orders() == broker.orders() and again.account()["cash"] == "4700"
    again.submit_order(make_request("SPY", qty=1, client_order_id="new"))
    assert [o.client_order_id for o in PaperBroker(state_path=path).orders()] == ["old", "new"]


def test_a_write_torn_by_a_failure_is_cut_off_and_the_change_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "paper.json"
    broker = PaperBroker(state_path=path)
    broker.submit_order(make_request("SPY", client_order_id="a"))
    broker.submit_order(make_request("SPY", client_order_id="b"))
    before = path.read_bytes()
    real_write = os.write

    def half_then_fail(fd: int, data: Any) -> int:
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(statefile_module.os, "write", half_then_fail)
    with pytest.raises(BrokerUnavailable, match="could not be written"):
        broker.submit_order(make_request("SPY", client_order_id="lost"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert broker.get_order_by_client_id("lost") is None
    broker.submit_order(make_request("SPY", client_order_id="c"))
    again = PaperBroker(state_path=path)
    assert [o.client_order_id for o in again.orders()] == ["a", "b", "c"]
    assert again.get_position("SPY") == broker.get_position("SPY")


def test_the_journal_is_folded_into_the_snapshot_once_it_outgrows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statefile_module, "COMPACT_MIN_BYTES", 0)
    path = tmp_path / "paper.json"
    broker = PaperBroker(state_path=path, fsync_every_change=True)
    counts = []
    for i in range(40):
        broker.submit_order(make_request("SPY", "buy" if i % 2 == 0 else "sell", 1, client_order_id=f"o{i}"))
        counts.append(len(lines(path)) - 1)
    assert counts[0] == 1 and 1 in counts[1:]  # compacted along the way
    assert max(counts) < 40  # never the whole history as a journal
    again = PaperBroker(state_path=path)
    assert again.orders() == broker.orders()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paper.json"]


def test_a_state_file_replaced_under_the_broker_is_written_whole_again(tmp_path: Path) -> None:
    path = tmp_path / "paper.json"
    broker = PaperBroker(state_path=path)
    broker.submit_order(make_request("SPY", client_order_id="a"))
    path.unlink()  # an append to the unlinked file would be lost: it must not be acknowledged so
    broker.submit_order(make_request("SPY", client_order_id="b"))
    assert [o.client_order_id for o in PaperBroker(state_path=path).orders()] == ["a", "b"]


# ---- a real crash ----------------------------------------------------------------------------


def _serve(state: Path, log: IO[str], compact_min_bytes: int | None = None) -> subprocess.Popen[str]:
    code = "import sys; from tradeguard.cli import main; sys.exit(main(['paper-server', *sys.argv[1:]]))"
    if compact_min_bytes is not None:  # compactions among the orders, not only at 1 MiB
        code = f"import tradeguard.paper.statefile as f; f.COMPACT_MIN_BYTES = {compact_min_bytes}; {code}"
    return subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--cash", "100000000", "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=log,  # every request is logged: a pipe nobody reads would fill and stall
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def _url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("paper server listening on "), line
    return line.split()[4]


@pytest.mark.parametrize("compact_min_bytes", [None, 0], ids=["journal", "compacting"])
def test_a_paper_server_killed_mid_stream_restarts_with_every_acknowledged_order(
    tmp_path: Path, compact_min_bytes: int | None
) -> None:
    state = tmp_path / "paper.json"
    with (tmp_path / "server.log").open("a") as log:
        acknowledged = _kill_mid_stream(state, log, compact_min_bytes)
        assert len(acknowledged) >= 300
        restarted = _serve(state, log)
        try:
            with alpaca_client(_url(restarted)) as client:
                kept = {o.client_order_id: o for o in client.get_orders(_all_orders())}
                for cid, (status, filled) in acknowledged.items():
                    assert (str(kept[cid].status), str(kept[cid].filled_qty)) == (status, filled)
                assert len(kept) in {len(acknowledged), len(acknowledged) + 1}  # + one sent, unanswered
                held = sum(1 if o.side is OrderSide.BUY else -1 for o in kept.values())
                assert client.get_open_position("SPY").qty == str(held)
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.communicate(timeout=30)
    assert len(lines(state)) == 2  # a clean stop leaves one snapshot


def _kill_mid_stream(state: Path, log: IO[str], compact_min_bytes: int | None) -> dict[str, tuple[str, str]]:
    """Serve `state`, send orders one after another, SIGKILL the server after 300 answers.

    Returns:
        The acknowledged orders: client_order_id -> (status, filled_qty) as answered.
    """
    acknowledged: dict[str, tuple[str, str]] = {}
    enough = threading.Event()
    proc = _serve(state, log, compact_min_bytes)
    try:
        url = _url(proc)

        def trade() -> None:
            with alpaca_client(url, timeout_secs=5) as client:
                i = 0
                while True:
                    side = OrderSide.SELL if i % 3 == 2 else OrderSide.BUY  # never short
                    request = MarketOrderRequest(
                        symbol="SPY", qty=1, side=side, time_in_force=TimeInForce.DAY, client_order_id=f"k{i}"
                    )
                    try:
                        order = client.submit_order(request)
                    except Exception:  # the server was killed under this request
                        enough.set()
                        return
                    acknowledged[order.client_order_id] = (str(order.status), str(order.filled_qty))
                    i += 1
                    if i >= 300:
                        enough.set()

        trader = threading.Thread(target=trade)
        trader.start()
        enough.wait(timeout=120)
        proc.send_signal(signal.SIGKILL)  # while the trader is sending its next orders
        trader.join(timeout=60)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return acknowledged


def _all_orders() -> Any:
    from alpaca.trading.enums import QueryOrderStatus
    from alpaca.trading.requests import GetOrdersRequest

    return GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500)
