"""Symbols, agent ids and figures on the command line are read as the library reads them.

A symbol given to `settle`, `claims list`, `audit` or `reconcile` is spelt the way every Intent
keys it (upper case; a crypto pair with its slash), so an operator's "tqqq" or Alpaca's listing
spelling "BTCUSD" names the position the gateway reads; an empty or malformed symbol or agent id,
and a figure no session would take (10**12 or more), is one line on stderr and exit 2.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from tradeguard import ClaimStore, OrderGateway, PaperBroker
from tradeguard.cli import main
from tradeguard.store import AuditQuery


@pytest.fixture
def url(tmp_path: Path) -> str:
    """An empty store, schema and all."""
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    ClaimStore(url).close()
    return url


@pytest.fixture
def traded_url(tmp_path: Path) -> str:
    """A store where agent "bot" bought 6 TQQQ and 0.5 BTC/USD (the latter spelt "BTCUSD")."""
    url = f"sqlite:///{tmp_path / 'traded.db'}"
    broker = PaperBroker()
    broker.set_price("TQQQ", "50")
    broker.set_price("BTC/USD", "60000")
    with ClaimStore(url) as store:
        gateway = OrderGateway(broker, store, agent_id="bot", reconcile_on_start=False)
        gateway.enter("TQQQ", qty=6, intent="09:42 buy")
        gateway.enter("BTCUSD", qty=Decimal("0.5"), intent="09:43 buy")
    return url


def _settle(url: str, *, agent: str = "bot", symbol: str, qty: str) -> list[str]:
    return [
        "settle",
        "--store",
        url,
        "--agent-id",
        agent,
        "--symbol",
        symbol,
        "--qty",
        qty,
        "--reason",
        "hand fix",
        "--new-agent",  # `url` is an empty store: "bot" is new to it
    ]


def test_settle_books_a_lower_case_symbol_where_the_gateway_reads_it(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_settle(url, symbol="tqqq", qty="5")) == 0
    assert "bot TQQQ: ledger 0 -> 5" in capsys.readouterr().out
    with ClaimStore(url) as store:
        assert OrderGateway(PaperBroker(), store, agent_id="bot").position("TQQQ").qty == 5


def test_settle_books_alpacas_listing_spelling_of_a_pair_under_the_ledgers_spelling(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_settle(url, symbol="BTCUSD", qty="0.5")) == 0
    assert "bot BTC/USD: ledger 0 -> 0.5" in capsys.readouterr().out
    with ClaimStore(url) as store:
        assert store.position("bot", "BTC/USD").qty == Decimal("0.5")
        assert store.position("bot", "BTCUSD").qty == 0


@pytest.mark.parametrize(
    ("agent", "symbol", "qty", "said"),
    [
        ("", "TQQQ", "1", "--agent-id"),
        ("bot bot", "TQQQ", "1", "--agent-id"),
        ("bot", "", "1", "--symbol"),
        ("bot", "TQ QQ", "1", "--symbol"),
        ("bot", "TQQQ", "1e20", "--qty"),
        ("bot", "TQQQ", "-1000000000000", "--qty"),
        ("bot", "TQQQ", "nan", "--qty"),
    ],
)
def test_settle_refuses_what_the_library_refuses_in_one_line_and_writes_nothing(
    url: str, agent: str, symbol: str, qty: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_settle(url, agent=agent, symbol=symbol, qty=qty)) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("tradeguard: error: ") and said in err, err
    with ClaimStore(url) as store:
        assert list(store.audit_records(AuditQuery())) == []


def test_settle_takes_the_largest_figure_a_session_takes(url: str) -> None:
    assert main(_settle(url, symbol="TQQQ", qty="-999999999999.5")) == 0


def test_claims_list_finds_a_pair_under_either_spelling_in_any_case(
    traded_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for spelling in ("btcusd", "BTC/USD", "btc/usd"):
        capsys.readouterr()
        assert (
            main(["claims", "list", "--all", "--store", traded_url, "--symbol", spelling, "--format", "csv"])
            == 0
        )
        rows = capsys.readouterr().out.splitlines()[1:]
        assert len(rows) == 1 and ",BTC/USD," in rows[0], (spelling, rows)


def test_audit_finds_a_pair_under_either_spelling_and_old_records_spelt_without_the_slash(
    traded_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A record written before migration 0008 keeps "BTCUSD" (the audit log is append-only).
    path = traded_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO tg_audit (at, agent_id, action, reason, symbol) "
            "SELECT at, agent_id, action, 'before 0008', 'BTCUSD' FROM tg_audit ORDER BY id LIMIT 1"
        )
    for spelling in ("btcusd", "BTC/USD"):
        capsys.readouterr()
        assert main(["audit", "--store", traded_url, "--symbol", spelling, "--format", "csv"]) == 0
        rows = capsys.readouterr().out.splitlines()[1:]
        assert rows and all(",BTC/USD," in r or ",BTCUSD," in r for r in rows), rows
        assert any("before 0008" in r for r in rows) and any(",BTC/USD," in r for r in rows)
        assert not any(",TQQQ," in r for r in rows)


@pytest.mark.parametrize(
    "argv",
    [
        ["claims", "list", "--symbol", ""],
        ["audit", "--symbol", "TQ QQ"],
        ["audit", "--agent-id", ""],
        ["claims", "list", "--agent-id", "a b"],
        ["reconcile", "--symbol", "", "--paper-url", "http://127.0.0.1:9"],
        ["reconcile", "--agent-id", "", "--paper-url", "http://127.0.0.1:9"],
        ["reconcile", "--adopt-orphans-to", "", "--paper-url", "http://127.0.0.1:9"],
    ],
)
def test_filters_refuse_a_symbol_or_agent_id_no_record_can_have(
    url: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--store", url]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("tradeguard: error: "), err


def test_an_agent_id_or_symbol_with_a_trailing_newline_is_refused(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A regex's `$` matches before a final newline: "bot\n" would be a second, invisible agent.
    assert main(_settle(url, agent="bot\n", symbol="TQQQ", qty="1")) == 2
    assert "--agent-id" in capsys.readouterr().err


def test_the_command_lines_bound_on_figures_is_the_session_files() -> None:
    from tradeguard.domain.intents import FIGURE_LIMIT
    from tradeguard.sessions import model

    assert model._LIMIT == FIGURE_LIMIT
