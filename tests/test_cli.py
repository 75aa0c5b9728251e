"""The `tradeguard` command over a real store and a file-backed paper account (G4, G6)."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tradeguard import ClaimStore, OrderGateway, PaperBroker, Settings
from tradeguard.cli import main


@pytest.fixture
def phantom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A store whose ledger holds 2 SQQQ that the paper account (a file) no longer holds."""
    monkeypatch.setenv("TRADEGUARD_SETTLE_DELAY_SECS", "0")
    monkeypatch.setenv("TRADEGUARD_UNKNOWN_PROBE_GAP_SECS", "0")
    monkeypatch.setenv("TRADEGUARD_RECENT_ACTIVITY_SECS", "0")
    monkeypatch.setenv("TRADEGUARD_POSITION_SETTLE_SECS", "0")  # the paper account never lags
    url, state = f"sqlite:///{tmp_path / 'claims.db'}", tmp_path / "paper.json"
    paper = PaperBroker(state_path=state)
    with ClaimStore(url, settings=Settings()) as store:
        OrderGateway(paper, store, agent_id="bot", reconcile_on_start=False).enter(
            "SQQQ", qty=2, intent="11:06 add"
        )
    paper.close_position("SQQQ")
    return url, state


def test_reconcile_dry_run_shows_the_phantom_and_changes_nothing(
    phantom: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = phantom
    assert main(["reconcile", "--store", url, "--paper-state", str(state), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "clear_phantom" in out and "SQQQ" in out and "dry run: would apply 1 action(s)" in out
    with ClaimStore(url) as store:
        assert store.position("bot", "SQQQ").qty == 2


def test_reconcile_clears_the_phantom_then_finds_nothing(
    phantom: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = phantom
    assert main(["reconcile", "--store", url, "--paper-state", str(state), "--agent-id", "bot"]) == 0
    assert "applied 1 action(s)" in capsys.readouterr().out
    with ClaimStore(url) as store:
        assert store.position("bot", "SQQQ").qty == 0
    assert main(["reconcile", "--store", url, "--paper-state", str(state)]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_audit_exports_csv_with_every_record(phantom: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = phantom
    out = tmp_path / "audit.csv"
    assert main(["audit", "--store", url, "--csv", str(out)]) == 0
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    with ClaimStore(url) as store:
        assert len(rows) == store.audit_count() > 0
    assert {r["action"] for r in rows} >= {"claim", "transition", "ledger"}


def test_reconcile_without_a_broker_says_how_to_configure_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    assert main(["reconcile", "--store", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert "APCA_API_KEY_ID" in capsys.readouterr().err


def test_a_bad_store_url_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--store", "mysql://nowhere/db"]) == 2
    assert "not supported" in capsys.readouterr().err


def test_reconcile_refuses_a_missing_paper_state_file(
    phantom: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped path must not read as a flat account (every position a phantom to clear).
    url, _ = phantom
    assert main(["reconcile", "--store", url, "--paper-state", str(tmp_path / "acct.jsn")]) == 2
    assert "acct.jsn does not exist" in capsys.readouterr().err
    with ClaimStore(url) as store:
        assert store.position("bot", "SQQQ").qty == 2


def test_reconcile_refuses_two_paper_accounts(
    phantom: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = phantom
    argv = ["reconcile", "--store", url, "--paper-state", str(state), "--paper-url", "http://127.0.0.1:9"]
    assert main(argv) == 2
    assert "--paper-url and --paper-state" in capsys.readouterr().err


def test_commands_that_read_a_store_never_create_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo.db"
    argv = ["settle", "--store", f"sqlite:///{missing}", "--agent-id", "a", "--symbol", "TQQQ", "--qty", "0",
            "--reason", "test"]  # fmt: skip
    assert main(argv) == 2
    assert "typo.db" in capsys.readouterr().err
    assert not missing.exists()


def test_reconcile_right_after_a_fill_says_the_check_is_put_off_not_all_clear(
    phantom: tuple[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an adversarial run: within the settle horizon the pass said "nothing to do: claims
    and ledger agree with the broker" while the ledger held 2 SQQQ and the broker none."""
    url, state = phantom
    monkeypatch.setenv("TRADEGUARD_POSITION_SETTLE_SECS", "3600")  # the fill is an hour fresh
    assert main(["reconcile", "--store", url, "--paper-state", str(state), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" not in out
    assert "put off" in out and "SQQQ: ledger 2, broker 0" in out


def test_reconcile_json_and_csv_carry_the_put_off_symbols(
    phantom: tuple[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table said "SQQQ: ledger 2, broker 0 ... waits until ...Z"; --format json said `[]`."""
    url, state = phantom
    monkeypatch.setenv("TRADEGUARD_POSITION_SETTLE_SECS", "3600")
    argv = ["reconcile", "--store", url, "--paper-state", str(state), "--dry-run", "--format"]
    assert main([*argv, "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    row = rows[0]
    assert {k: row[k] for k in ("action", "agent", "symbol", "qty", "ledger_qty", "broker_qty")} == {
        "action": "put_off", "agent": "*", "symbol": "SQQQ", "qty": "", "ledger_qty": "2", "broker_qty": "0",
    }  # fmt: skip
    until = datetime.fromisoformat(row["until"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1, seconds=1)
    assert "ledger 2, broker 0" in row["reason"] and row["until"] in row["reason"]
    assert main([*argv, "csv"]) == 0
    (only,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert (only["action"], only["symbol"], only["reason"]) == ("put_off", "SQQQ", row["reason"])


def test_reconcile_table_lists_the_put_off_symbols_beside_the_actions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQQQ's ledger moved long enough ago to be checked (a phantom to clear); TQQQ's just now.
    monkeypatch.setenv("TRADEGUARD_SETTLE_DELAY_SECS", "0")
    monkeypatch.setenv("TRADEGUARD_UNKNOWN_PROBE_GAP_SECS", "0")
    monkeypatch.setenv("TRADEGUARD_RECENT_ACTIVITY_SECS", "0")
    monkeypatch.setenv("TRADEGUARD_POSITION_SETTLE_SECS", "1")
    url, state = f"sqlite:///{tmp_path / 'claims.db'}", tmp_path / "paper.json"
    paper = PaperBroker(state_path=state)
    with ClaimStore(url, settings=Settings()) as store:
        gateway = OrderGateway(paper, store, agent_id="bot", reconcile_on_start=False)
        gateway.enter("SQQQ", qty=2, intent="11:06 add")
        time.sleep(1.2)
        gateway.enter("TQQQ", qty=3, intent="11:07 add")
    paper.close_position("SQQQ")
    paper.close_position("TQQQ")
    assert main(["reconcile", "--store", url, "--paper-state", str(state), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "clear_phantom" in out and "dry run: would apply 1 action(s)" in out
    assert "TQQQ: ledger 3, broker 0" in out
