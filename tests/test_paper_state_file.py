"""The paper account's state file: refused at start when it cannot be kept, and never half-kept.

A change the state file could not record is undone before the caller hears of it: the in-memory
account is as it was before the call, and the paper server answers 500 with nothing placed.
"""

from __future__ import annotations

import builtins
import os
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from tradeguard.cli import main
from tradeguard.domain import OrderStatus, OrderType, ReplaceRequest
from tradeguard.domain import TimeInForce as Tif
from tradeguard.errors import BrokerUnavailable, ConfigError
from tradeguard.paper import PaperBroker
from tradeguard.paper import statefile as statefile_module
from tradeguard.testing import alpaca_client, make_request, paper_server


def market(qty: int, cid: str) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol="SPY", qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, client_order_id=cid
    )


def unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `path` unreadable: by its mode, or (as root, whom modes do not stop) by `open`."""
    path.write_text("{}")
    if os.geteuid() != 0:
        path.chmod(0)
        return
    real_open = builtins.open

    def refusing_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)


@pytest.mark.parametrize("case", ["missing folder", "folder", "unreadable", "not an account"])
def test_a_state_file_that_cannot_be_kept_is_refused_at_start_in_one_line(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = {
        "missing folder": tmp_path / "nonexistent" / "d" / "s.json",
        "folder": tmp_path,
        "unreadable": tmp_path / "locked.json",
        "not an account": tmp_path / "other.json",
    }[case]
    if case == "unreadable":
        unreadable(path, monkeypatch)
    if case == "not an account":
        path.write_text('{"hello": "world"}')
    expected = {
        "missing folder": f"paper state {path}: cannot write to {path.parent}: No such file or directory",
        "folder": f"paper state {path} is a directory, not a file",
        "unreadable": f"paper state {path}: cannot read it: Permission denied",
        "not an account": (
            f"paper state {path}: not a paper account: ValueError('unsupported state version None')"
        ),
    }[case]
    with pytest.raises(ConfigError) as info:
        PaperBroker(state_path=path)
    assert str(info.value) == expected
    assert main(["paper-server", "--port", "0", "--state", str(path)]) == 2
    out, err = capsys.readouterr()
    # The command line says it in words (audit 27), not as the exception's repr.
    said = expected.replace("ValueError('unsupported state version None')", "unsupported state version None")
    assert (out, err) == ("", f"tradeguard: error: {said}\n")
    assert not (tmp_path / "nonexistent").exists()


def test_an_order_whose_save_fails_is_not_placed_and_the_server_answers_500(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    path = folder / "paper.json"
    with paper_server(state_path=path) as server, alpaca_client(server.url) as client:
        kept = client.submit_order(market(3, "kept"))
        shutil.rmtree(folder)  # the state's folder goes away mid-run
        with pytest.raises(APIError) as info:
            client.submit_order(market(5, "lost"))
        assert info.value.status_code == 500
        assert "could not be written" in info.value.message
        assert [o.client_order_id for o in server.broker.orders()] == ["kept"]
        with pytest.raises(APIError) as lookup:
            client.get_order_by_client_id("lost")
        assert lookup.value.status_code == 404
        assert client.get_open_position("SPY").qty == "3"
        assert client.get_account().cash == "99700"
        folder.mkdir()  # the folder is back: the account carries on from what it holds
        client.submit_order(market(1, "after"))
    again = PaperBroker(state_path=path)
    assert [o.client_order_id for o in again.orders()] == ["kept", "after"]
    assert again.get_order_by_client_id("kept") is not None and str(kept.id) == again.orders()[0].id


@pytest.fixture
def failing_writes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Make every write of the state file fail while the returned list holds True.

    Both ways the file is written fail: the journal line appended to it (`os.write` on its
    descriptor) and the whole file put in place (`os.replace`, the first write and compactions).
    """
    failing: list[bool] = []
    real_replace, real_write = os.replace, os.write

    def replace(src: Any, dst: Any) -> None:
        if failing:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    def write(fd: int, data: Any) -> int:
        if failing and os.readlink(f"/proc/self/fd/{fd}").endswith(".json"):
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(statefile_module.os, "replace", replace)
    monkeypatch.setattr(statefile_module.os, "write", write)
    return failing


def test_every_change_is_undone_when_its_save_fails(tmp_path: Path, failing_writes: list[bool]) -> None:
    broker = PaperBroker(state_path=tmp_path / "paper.json")
    broker.submit_order(make_request("SPY", qty=10, client_order_id="long"))
    resting = broker.submit_order(
        make_request(
            "SPY",
            "sell",
            4,
            client_order_id="tp",
            order_type=OrderType.LIMIT,
            limit_price=Decimal(120),
            time_in_force=Tif.GTC,
        )
    )
    before = (broker.orders(), broker.list_positions(), broker.account())
    failing_writes.append(True)
    attempts = [
        lambda: broker.submit_order(
            make_request(
                "SPY", qty=1, client_order_id="new", order_type=OrderType.LIMIT, limit_price=Decimal(90)
            )
        ),
        lambda: broker.cancel_order(resting.id),
        lambda: broker.replace_order(resting.id, ReplaceRequest(limit_price=Decimal(121))),
        lambda: broker.set_price("SPY", "125"),  # would fill the resting sell
        lambda: broker.close_position("SPY", qty=Decimal(1)),
        broker.cancel_all_orders,
    ]
    for attempt in attempts:
        with pytest.raises(BrokerUnavailable) as info:
            attempt()
        assert (info.value.status_code, info.value.code) == (500, 50010000)
        assert (broker.orders(), broker.list_positions(), broker.account()) == before
    assert broker.get_order_by_client_id("new") is None
    failing_writes.clear()
    bid = make_request(
        "SPY", qty=1, client_order_id="new", order_type=OrderType.LIMIT, limit_price=Decimal(90)
    )
    assert broker.submit_order(bid).status is OrderStatus.NEW
    assert [o.client_order_id for o in PaperBroker(state_path=tmp_path / "paper.json").orders()] == [
        "long",
        "tp",
        "new",
    ]


def test_no_temp_file_is_left_behind_by_a_failed_write(tmp_path: Path, failing_writes: list[bool]) -> None:
    broker = PaperBroker(state_path=tmp_path / "paper.json")
    failing_writes.append(True)
    with pytest.raises(BrokerUnavailable):
        broker.submit_order(make_request("SPY", client_order_id="x"))
    assert list(tmp_path.iterdir()) == []


def test_a_limit_order_answer_over_http_is_a_500_when_the_save_fails(
    failing_writes: list[bool], tmp_path: Path
) -> None:
    with paper_server(state_path=tmp_path / "paper.json") as server, alpaca_client(server.url) as client:
        failing_writes.append(True)
        with pytest.raises(APIError) as info:
            client.submit_order(
                LimitOrderRequest(
                    symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=90
                )
            )
        assert (info.value.status_code, info.value.code) == (500, 50010000)
        assert client.get_orders() == []
