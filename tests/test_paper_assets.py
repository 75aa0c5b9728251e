"""The paper venue's asset master: which symbols trade, Alpaca's asset JSON and its refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import AssetClass, AssetExchange, AssetStatus, OrderSide, TimeInForce
from alpaca.trading.models import Asset as AlpacaAsset
from alpaca.trading.requests import GetAssetsRequest, MarketOrderRequest

from tradeguard.cli import main
from tradeguard.domain import OrderType, PositionIntent
from tradeguard.domain import TimeInForce as Tif
from tradeguard.errors import ConfigError, OrderRejected
from tradeguard.paper import PaperBroker
from tradeguard.paper.assets import Asset, AssetBook, load_assets
from tradeguard.paper.prices import FixedPrices, RecordedPrices
from tradeguard.testing import alpaca_client, make_request, paper_server

ROOT = Path(__file__).resolve().parents[1]
MUST_SHIP = ["SPY", "QQQ", "TQQQ", "SQQQ", "DIA", "IWM", "AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "GOOGL"]
MUST_SHIP += ["META", "DDM", "SDS", "QLD"]


def refusal(broker: PaperBroker, **request: Any) -> OrderRejected:
    with pytest.raises(OrderRejected) as info:
        broker.submit_order(make_request(**request))
    return info.value


def test_the_shipped_list_has_the_common_symbols_and_alpaca_py_parses_every_asset() -> None:
    book = AssetBook.shipped()
    assert set(MUST_SHIP) <= {a.symbol for a in book}
    assert len(list(book)) >= 60
    for asset in book:
        parsed = AlpacaAsset(**asset.to_alpaca())
        assert (parsed.symbol, str(parsed.id)) == (asset.symbol, asset.id)


def test_an_invented_symbol_is_refused_as_alpaca_refuses_it_and_places_nothing() -> None:
    broker = PaperBroker()
    error = refusal(broker, symbol="ZZZZ", client_order_id="typo")
    assert (error.status_code, error.code) == (422, 42210000)
    assert error.body == {"code": 42210000, "message": 'asset "ZZZZ" not found'}
    assert broker.orders() == []
    assert broker.get_order_by_client_id("typo") is None


def test_a_symbol_given_a_price_trades_without_a_listing() -> None:
    at = datetime(2026, 5, 21, 14, tzinfo=UTC)
    broker = PaperBroker(prices=FixedPrices({"NEWX": 5}, default=7))
    assert broker.submit_order(make_request("NEWX", client_order_id="a")).filled_avg_price == 5
    assert refusal(broker, symbol="OTHERX", client_order_id="b").message == 'asset "OTHERX" not found'
    broker.set_price("PINNED", "3")  # a pinned symbol trades too
    assert broker.submit_order(make_request("PINNED", client_order_id="c")).filled_avg_price == 3
    recorded = PaperBroker(prices=RecordedPrices({"REC": [(at, "2")]}))
    assert recorded.get_asset("REC") is not None and recorded.get_asset("NOPE") is None


@pytest.mark.parametrize(
    ("asset", "request_fields", "status", "code", "message"),
    [
        (Asset("HTB", shortable=False), {"side": "sell"}, 422, 42210000, 'asset "HTB" cannot be sold short'),
        # Shortable but hard to borrow: the Trading API opens shorts only in easy-to-borrow names.
        (
            Asset("TZA", easy_to_borrow=False),
            {"side": "sell"},
            422,
            42210000,
            'asset "TZA" cannot be sold short',
        ),
        (
            Asset("WHOLE", fractionable=False),
            {"qty": "1.5"},
            422,
            42210000,
            "requested asset is not fractionable",
        ),
        (
            Asset("WHOLE", fractionable=False),
            {"qty": None, "notional": Decimal(50)},
            422,
            42210000,
            "requested asset is not fractionable",
        ),
        (Asset("GONE", status="inactive"), {}, 422, 42210000, 'asset "GONE" is not tradable'),
        (Asset("DATA", tradable=False), {}, 422, 42210000, 'asset "DATA" is not tradable'),
    ],
)
def test_an_assets_flags_are_enforced(
    asset: Asset, request_fields: dict[str, Any], status: int, code: int, message: str
) -> None:
    broker = PaperBroker(assets=[asset], allow_short=True)
    error = refusal(broker, symbol=asset.symbol, client_order_id="x", **request_fields)
    assert (error.status_code, error.code, error.message) == (status, code, message)
    assert error.body == {"code": code, "message": message}


def test_the_account_refusal_to_short_comes_before_the_assets() -> None:
    broker = PaperBroker(assets=[Asset("HTB", shortable=False)])
    assert (
        refusal(broker, symbol="HTB", side="sell", client_order_id="x").message
        == "account is not allowed to short"
    )


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"qty": "1.5", "time_in_force": Tif.GTC}, "fractional orders must be DAY orders"),
        ({"qty": "1.5", "side": "sell"}, "fractional orders cannot be sold short"),
        ({"extended_hours": True}, "extended hours order must be DAY or GTC limit orders"),
    ],
)
def test_fractional_and_extended_hours_orders_follow_alpacas_rules(
    request_fields: dict[str, Any], message: str
) -> None:
    broker = PaperBroker(allow_short=True)
    fields = {"qty": Decimal(str(request_fields.pop("qty", 1))), **request_fields}
    error = refusal(broker, symbol="SPY", client_order_id="x", **fields)
    assert (error.status_code, error.code, error.message) == (422, 42210000, message)


def test_a_fractional_day_order_and_closing_a_fractional_long_are_fine() -> None:
    broker = PaperBroker()
    broker.submit_order(make_request("SPY", qty=Decimal("1.5"), client_order_id="a"))
    sell = make_request(
        "SPY", "sell", Decimal("1.5"), client_order_id="b", position_intent=PositionIntent.SELL_TO_CLOSE
    )
    broker.submit_order(sell)
    assert broker.get_position("SPY") is None


def test_an_extended_hours_limit_order_is_fine() -> None:
    broker = PaperBroker()
    order = broker.submit_order(
        make_request(
            "SPY",
            client_order_id="eh",
            order_type=OrderType.LIMIT,
            limit_price=Decimal(90),
            extended_hours=True,
        )
    )
    assert order.raw["extended_hours"] is True


def test_an_asset_file_adds_and_overrides_assets(tmp_path: Path) -> None:
    path = tmp_path / "assets.csv"
    path.write_text(
        "symbol,name,exchange,shortable,attributes\nNEWCO,New Company Inc.,NYSE,false,ipo\nSPY,,,false,\n"
    )
    broker = PaperBroker(assets_path=path, allow_short=True)
    newco = broker.get_asset("newco")
    assert newco is not None and (newco.name, newco.exchange, newco.shortable, newco.attributes) == (
        "New Company Inc.",
        "NYSE",
        False,
        ("ipo",),
    )
    assert broker.get_asset(newco.id) == newco
    assert (
        refusal(broker, symbol="SPY", side="sell", client_order_id="s").message
        == 'asset "SPY" cannot be sold short'
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name\nX\n", "assets.csv:1: missing column symbol"),
        ("symbol,colour\nX,red\n", "assets.csv:1: unknown column(s) colour"),
        ("symbol,shortable\nX,maybe\n", "assets.csv:2: shortable must be true or false, got 'maybe'"),
        ("symbol,exchange\nX,MOON\n", "assets.csv:2: unknown exchange 'MOON'"),
        ("symbol\n \n", "assets.csv:2: empty symbol"),
        (
            "symbol,maintenance_margin_requirement\nX,101\n",
            "assets.csv:2: maintenance_margin_requirement must be 0 to 100, got '101'",
        ),
    ],
)
def test_a_bad_asset_file_names_the_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "assets.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_assets(path)
    assert str(info.value).endswith(problem)
    with pytest.raises(ConfigError):
        PaperBroker(assets_path=tmp_path / "missing.csv")


# ---- over HTTP, with alpaca-py --------------------------------------------------------------


def test_alpaca_py_reads_assets_one_by_one_and_filtered() -> None:
    with paper_server() as server, alpaca_client(server.url) as client:
        aapl = client.get_asset("AAPL")
        assert (aapl.exchange, aapl.status, aapl.fractionable, aapl.shortable) == (
            AssetExchange.NASDAQ,
            AssetStatus.ACTIVE,
            True,
            True,
        )
        assert aapl.maintenance_margin_requirement == 30
        assert client.get_asset(str(aapl.id)).symbol == "AAPL"
        everything = client.get_all_assets()
        nasdaq = client.get_all_assets(
            GetAssetsRequest(status=AssetStatus.ACTIVE, exchange=AssetExchange.NASDAQ)
        )
        assert "AAPL" in {a.symbol for a in nasdaq} and "SPY" not in {a.symbol for a in nasdaq}
        assert {a.exchange for a in nasdaq} == {AssetExchange.NASDAQ}
        assert len(everything) > len(nasdaq)
        eh = client.get_all_assets(GetAssetsRequest(attributes="fractional_eh_enabled"))
        assert "AAPL" in {a.symbol for a in eh} and "TQQQ" not in {a.symbol for a in eh}
        crypto = client.get_all_assets(GetAssetsRequest(asset_class=AssetClass.CRYPTO))
        pairs = {"BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD", "LTC/USD", "ETH/BTC"}
        assert {a.symbol for a in crypto} >= pairs
        assert not {a.symbol for a in crypto} & {a.symbol for a in everything}  # us_equity by default
        with pytest.raises(APIError) as info:
            client.get_asset("ZZZZ")
        assert (info.value.status_code, str(info.value)) == (
            404,
            '{"code":40410000,"message":"asset not found"}',
        )


def test_an_invented_symbol_is_refused_over_http_byte_for_byte() -> None:
    with paper_server() as server, alpaca_client(server.url) as client:
        with pytest.raises(APIError) as info:
            client.submit_order(
                MarketOrderRequest(symbol="ZZZZ", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
            )
        assert (info.value.status_code, str(info.value)) == (
            422,
            '{"code":42210000,"message":"asset \\"ZZZZ\\" not found"}',
        )
        assert server.broker.orders() == []


def test_positions_name_their_assets_exchange() -> None:
    with paper_server() as server, alpaca_client(server.url) as client:
        client.submit_order(
            MarketOrderRequest(symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        )
        assert client.get_open_position("SPY").exchange == AssetExchange.ARCA


def test_the_command_takes_an_asset_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "assets.csv"
    good.write_text("symbol,name\nNEWCO,New Company Inc.\n")
    code = "import sys; from tradeguard.cli import main; sys.exit(main(['paper-server', *sys.argv[1:]]))"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--assets", str(good)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[4]
        with alpaca_client(url) as client:
            assert client.get_asset("NEWCO").name == "New Company Inc."
        proc.terminate()
        proc.communicate(timeout=30)
    bad = tmp_path / "bad.csv"
    bad.write_text("symbol,exchange\nX,MOON\n")
    assert main(["paper-server", "--port", "0", "--assets", str(bad)]) == 2
    assert capsys.readouterr().err == f"tradeguard: error: {bad}:2: unknown exchange 'MOON'\n"


def test_the_asset_list_is_package_data_of_the_wheel(tmp_path: Path) -> None:
    # The wheel is built from what setuptools' build_py gathers; run it on a copy of the tree
    # so the checkout gets no build/ or egg-info.
    source = tmp_path / "src"
    source.mkdir()
    shutil.copytree(ROOT / "tradeguard", source / "tradeguard", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path / "lib"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import setup; setup()",
            "-q",
            "build_py",
            "--build-lib",
            str(out),
        ],
        cwd=source,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    shipped = out / "tradeguard" / "paper" / "assets.csv"
    assert shipped.read_text() == (ROOT / "tradeguard" / "paper" / "assets.csv").read_text()
    assert json.dumps(AssetBook.shipped().get("SPY").to_alpaca())  # type: ignore[union-attr]
