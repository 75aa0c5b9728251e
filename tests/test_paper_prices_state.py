"""PaperBroker's price sources and its state file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.mothers import limit
from tradeguard.clock import ManualClock
from tradeguard.domain import OrderStatus
from tradeguard.errors import ConfigError, OrderRejected
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import CsvBarPrices, FixedPrices, RecordedPrices
from tradeguard.testing import make_request


def test_fixed_prices_refuse_floats_and_non_positive_prices() -> None:
    with pytest.raises(ConfigError):
        FixedPrices({"TQQQ": "0"})
    with pytest.raises(ConfigError):
        FixedPrices({"TQQQ": "abc"})
    assert FixedPrices({"tqqq": 5}, default="1.5").price("TQQQ", datetime.now(UTC)) == 5
    assert FixedPrices(default="1.5").price("ANY", datetime.now(UTC)) == Decimal("1.5")


def test_recorded_prices_follow_the_injected_clock() -> None:
    clock = ManualClock(datetime(2026, 5, 21, 13, 30, tzinfo=UTC))
    t0 = clock.now()
    prices = RecordedPrices({"TQQQ": [(t0 + timedelta(minutes=1), "51.10"), (t0, "50.00")]})
    broker = PaperBroker(prices=prices, clock=clock)
    assert broker.submit_order(make_request(client_order_id="a")).filled_avg_price == Decimal("50")
    clock.advance(90)
    assert broker.submit_order(make_request(client_order_id="b")).filled_avg_price == Decimal("51.1")


def test_a_symbol_without_price_waits_for_one() -> None:
    broker = PaperBroker(prices=FixedPrices({"TQQQ": 50}))
    # SQQQ is a listed asset the source has no price for.
    waiting = broker.submit_order(make_request("SQQQ", client_order_id="w"))
    assert waiting.status is OrderStatus.NEW
    assert broker.set_price("SQQQ", "12.5")[0].filled_avg_price == Decimal("12.5")


def test_csv_bar_prices(tmp_path: Path) -> None:
    bars = tmp_path / "bars.csv"
    bars.write_text(
        "timestamp,symbol,open,high,low,close,volume\n"
        "2026-05-21T13:30:00+00:00,TQQQ,50,51,49,50.5,100\n"
        "2026-05-21T13:31:00Z,TQQQ,50.5,52,50,51.25,100\n"
    )
    source = CsvBarPrices(bars)
    at = datetime(2026, 5, 21, 13, 30, 30, tzinfo=UTC)
    assert source.price("TQQQ", at) == Decimal("50.5")
    assert source.price("TQQQ", at + timedelta(minutes=5)) == Decimal("51.25")
    assert source.price("TQQQ", at - timedelta(minutes=5)) is None
    assert source.price("SQQQ", at) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("timestamp,close\n", "bars.csv:1: missing column(s) symbol"),
        (
            "timestamp,symbol,close\n2026-05-21T13:30:00,TQQQ,1\n",
            "bars.csv:2: timestamp '2026-05-21T13:30:00' has no timezone",
        ),
        ("timestamp,symbol,close\n2026-05-21T13:30:00Z,TQQQ,x\n", "bars.csv:2: price 'x' is not a number"),
    ],
)
def test_bad_bar_files_name_the_line(tmp_path: Path, text: str, problem: str) -> None:
    bars = tmp_path / "bars.csv"
    bars.write_text(text)
    with pytest.raises(ConfigError) as info:
        CsvBarPrices(bars)
    assert str(info.value).endswith(problem)


def test_state_file_keeps_the_account_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "paper.json"
    first = PaperBroker(state_path=path, cash=5000)
    first.submit_order(make_request(qty=10, client_order_id="keep"))
    first.submit_order(limit("TQQQ", "sell", 4, "150.00", "tp"))
    again = PaperBroker(state_path=path)
    assert again.orders() == first.orders()
    assert again.get_position("TQQQ") == first.get_position("TQQQ")
    assert again.account()["cash"] == "4000"
    with pytest.raises(OrderRejected, match="client_order_id must be unique"):
        again.submit_order(make_request(client_order_id="keep"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paper.json"]  # no temp files left


def test_a_corrupt_state_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "paper.json"
    path.write_text(json.dumps({"version": 1, "cash": "1"}))
    with pytest.raises(ConfigError, match=r"paper\.json"):
        PaperBroker(state_path=path)
