"""`tradeguard claims`: list, show and resolve over a real store and a file-backed paper account.

Every test runs on a SQLite file and on the real PostgreSQL server (the `store_url` fixture).
The UNKNOWN claims are made as the guard makes them: claimed, sent, no definite answer; the paper
account (a JSON file, as `--paper-state` reads it) holds what really happened to the order.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.mothers import make_intent, make_spec
from tradeguard import ClaimStore, PaperBroker, Settings
from tradeguard.cli import main
from tradeguard.domain import AuditAction, Claim
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.ports import account_key_from_id, account_key_of
from tradeguard.reconcile import Reconciler
from tradeguard.store import AuditQuery


def unknown_claim(url: str, name: str, *, qty: int = 6) -> Claim:
    """Claim agent "bot"'s entry of `qty` TQQQ and leave it UNKNOWN, as after a timeout."""
    with ClaimStore(url) as store:
        made = store.claim(make_intent(name, symbol="TQQQ"), make_spec(qty), owner="worker-1").claim
        return store.transition(made, ClaimState.UNKNOWN, reason="read timeout after send")


@pytest.fixture
def paper_file(tmp_path: Path) -> Path:
    """A paper account in a file, TQQQ at $50."""
    path = tmp_path / "paper.json"
    PaperBroker(state_path=path).set_price("TQQQ", "50")
    return path


@pytest.fixture
def sent_and_filled(store_url: str, paper_file: Path) -> Claim:
    """An UNKNOWN claim whose order did reach the broker and filled there."""
    claim = unknown_claim(store_url, "09:42 buy")
    PaperBroker(state_path=paper_file).submit_order(claim.request())
    return claim


def state_of(url: str, claim: Claim) -> tuple[ClaimState, Decimal, int]:
    """The claim's state, the agent's TQQQ ledger position and the audit log's length."""
    with ClaimStore(url) as store:
        now = store.get(claim.key)
        assert now is not None
        return now.state, store.position("bot", "TQQQ").qty, store.audit_count()


def resolve(url: str, claim: Claim, *args: str) -> int:
    return main(["claims", "resolve", claim.client_order_id, "--store", url, *args])


def test_list_shows_open_and_unknown_claims_and_show_gives_the_trail(
    store_url: str, sent_and_filled: Claim, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["claims", "list", "--store", store_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["client_order_id", "agent", "kind"]
    assert len(lines) == 2 and sent_and_filled.client_order_id in lines[1] and "UNKNOWN" in lines[1]
    assert main(["claims", "list", "--store", store_url, "--state", "filled"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1  # the header alone
    assert main(["claims", "show", sent_and_filled.key, "--store", store_url, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (
        doc["claim"]["state"] == "UNKNOWN"
        and doc["claim"]["client_order_id"] == sent_and_filled.client_order_id
    )
    assert [r["action"] for r in doc["audit"]] == ["claim", "transition"]


def test_show_names_an_unknown_id_in_one_line(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    unknown_claim(store_url, "x")
    assert main(["claims", "show", "tg-nope", "--store", store_url]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "no claim with key or client_order_id 'tg-nope'" in err[0]


def test_resolve_filled_adopts_the_broker_fill_into_the_ledger_and_audits_who_and_why(
    store_url: str, sent_and_filled: Claim, paper_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "--as",
        "filled",
        "--reason",
        "fills report shows it",
        "--actor",
        "ana",
        "--paper-state",
        str(paper_file),
    ]
    assert resolve(store_url, sent_and_filled, *args) == 0
    assert "UNKNOWN -> FILLED" in capsys.readouterr().out
    state, held, _ = state_of(store_url, sent_and_filled)
    assert (state, held) == (ClaimState.FILLED, 6)
    with ClaimStore(store_url) as store:
        (record,) = [
            r
            for r in store.audit_records(AuditQuery(client_order_id=sent_and_filled.client_order_id))
            if r.state == "FILLED"
        ]
    assert record.action is AuditAction.TRANSITION
    assert "ana" in record.reason and "fills report shows it" in record.reason
    assert record.detail["actor"] == "ana" and record.detail["operator_reason"] == "fills report shows it"
    assert "broker's order" in record.detail["evidence"]


def test_a_claim_resolved_as_filled_moves_the_ledger_as_the_reconciler_adopting_the_fill_does(
    store_url: str, paper_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADEGUARD_RECENT_ACTIVITY_SECS", "0")
    by_hand, by_reconcile = (
        unknown_claim(store_url, "by hand", qty=4),
        unknown_claim(store_url, "by reconcile", qty=4),
    )
    paper = PaperBroker(state_path=paper_file)
    paper.submit_order(by_hand.request())
    args = ["--as", "filled", "--reason", "checked", "--paper-state", str(paper_file)]
    assert resolve(store_url, by_hand, *args) == 0
    with ClaimStore(store_url) as store:
        after_hand = store.position("bot", "TQQQ")
    paper = PaperBroker(state_path=paper_file)
    paper.submit_order(by_reconcile.request())
    with ClaimStore(store_url, settings=Settings(recent_activity_secs=0)) as store:
        Reconciler(paper, store, settings=Settings(recent_activity_secs=0)).run()
        after_both = store.position("bot", "TQQQ")
        hand, rec = store.get(by_hand.key), store.get(by_reconcile.key)
    assert hand is not None and rec is not None
    assert after_hand.qty == 4 and after_both.qty == 8
    assert (hand.state, hand.filled_qty, hand.filled_avg_price) == (
        rec.state,
        rec.filled_qty,
        rec.filled_avg_price,
    )
    assert hand.filled_avg_price == Decimal(50)
    assert hand.turn_id == rec.turn_id == after_both.turn_id is not None  # one turn, as two fills make
    with ClaimStore(store_url) as store:
        deltas = {
            r.client_order_id: r.detail.get("fill_delta")
            for r in store.audit_records(AuditQuery(actions=("transition",), state="FILLED"))
        }
    assert deltas == {by_hand.client_order_id: "4", by_reconcile.client_order_id: "4"}


def test_resolve_not_sent_is_refused_while_the_broker_has_the_order(
    store_url: str, sent_and_filled: Claim, paper_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = state_of(store_url, sent_and_filled)
    args = ["--as", "not-sent", "--reason", "bot log shows no POST", "--paper-state", str(paper_file)]
    assert resolve(store_url, sent_and_filled, *args) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("tradeguard: refused: the broker has order")
    assert state_of(store_url, sent_and_filled) == before  # nothing changed, not even the audit log


def test_resolve_filled_is_refused_when_the_broker_has_no_such_order(
    store_url: str, paper_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claim = unknown_claim(store_url, "never left")
    before = state_of(store_url, claim)
    assert resolve(store_url, claim, "--as", "filled", "--reason", "r", "--paper-state", str(paper_file)) == 1
    assert "the broker has no order" in capsys.readouterr().err
    assert state_of(store_url, claim) == before
    assert (
        resolve(store_url, claim, "--as", "not-sent", "--reason", "r", "--paper-state", str(paper_file)) == 0
    )
    assert state_of(store_url, claim)[:2] == (ClaimState.NOT_SENT, 0)


def test_resolve_without_a_broker_needs_to_be_told_so(
    store_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    claim = unknown_claim(store_url, "offline")
    assert resolve(store_url, claim, "--as", "filled", "--reason", "phoned the desk") == 2
    assert "--without-broker" in capsys.readouterr().err
    assert state_of(store_url, claim)[0] is ClaimState.UNKNOWN
    args = [
        "--as",
        "filled",
        "--reason",
        "phoned the desk",
        "--actor",
        "bo",
        "--price",
        "51.5",
        "--without-broker",
    ]
    assert resolve(store_url, claim, *args) == 0
    with ClaimStore(store_url) as store:
        assert store.position("bot", "TQQQ").qty == 6
        record = list(store.audit_records(AuditQuery(client_order_id=claim.client_order_id)))[-1]
    assert (
        record.detail["evidence"] == "no broker asked: the operator's word" and record.detail["actor"] == "bo"
    )


def test_a_finished_claim_is_not_resolved_again(
    store_url: str, sent_and_filled: Claim, paper_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--as", "filled", "--reason", "r", "--paper-state", str(paper_file)]
    assert resolve(store_url, sent_and_filled, *args) == 0
    capsys.readouterr()
    assert resolve(store_url, sent_and_filled, *args) == 1
    assert "already FILLED" in capsys.readouterr().err
    assert state_of(store_url, sent_and_filled)[1] == 6  # not booked twice


def test_a_pending_claim_under_a_live_lease_is_left_to_its_sender(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with ClaimStore(store_url) as store:
        claim = store.claim(make_intent("in flight", symbol="TQQQ"), make_spec(6), owner="worker-1").claim
    assert resolve(store_url, claim, "--as", "not-sent", "--reason", "r", "--without-broker") == 1
    assert "lease" in capsys.readouterr().err
    assert state_of(store_url, claim)[0] is ClaimState.PENDING


def test_list_marks_open_claims_not_updated_for_a_while_as_stale(
    store_url: str, sent_and_filled: Claim, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["claims", "list", "--store", store_url, "--stale", "--stale-after", "3600"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1  # updated a moment ago: not stale
    assert (
        main(["claims", "list", "--store", store_url, "--stale", "--stale-after", "0", "--format", "json"])
        == 0
    )
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["client_order_id"], row["state"], row["stale"]) == (
        sent_and_filled.client_order_id,
        "UNKNOWN",
        "yes",
    )


def _unknown_caller_claim(url: str, agent: str, account: str) -> Claim:
    """`agent` on `account` claimed caller id "entry-1" (6 TQQQ); its send's answer was lost."""
    with ClaimStore(url) as store:
        store.register_account(agent, account)
        intent = make_intent("coid:entry-1", symbol="TQQQ", agent=agent)
        made = store.claim(intent, make_spec(6), owner="worker-1", client_order_id="entry-1").claim
        return store.transition(made, ClaimState.UNKNOWN, reason="read timeout after send")


def test_a_client_order_id_two_accounts_hold_is_resolved_on_the_brokers_account_only(
    store_url: str, paper_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ids are unique per account (migration 0012): "entry-1" names bot-a's claim on x, bot-b's on y."""
    y = PaperBroker(state_path=paper_file)
    elsewhere = _unknown_caller_claim(store_url, "bot-a", account_key_from_id("account-x"))  # the oldest
    mine = _unknown_caller_claim(store_url, "bot-b", account_key_of(y))
    y.submit_order(mine.request())  # bot-b's order landed at y and filled
    # Which claim "entry-1" means is not the CLI's to guess without a broker.
    assert main(["claims", "show", "entry-1", "--store", store_url]) == 2
    err = capsys.readouterr().err
    assert elsewhere.key in err and mine.key in err
    args = ["--as", "filled", "--reason", "fills report", "--paper-state", str(paper_file)]
    assert main(["claims", "resolve", "entry-1", "--store", store_url, *args]) == 0
    with ClaimStore(store_url) as store:
        a, b = store.get(elsewhere.key), store.get(mine.key)
        assert a is not None and a.state is ClaimState.UNKNOWN and a.broker_order_id is None
        assert b is not None and b.state is ClaimState.FILLED
        assert store.position("bot-a", "TQQQ").is_flat and store.position("bot-b", "TQQQ").qty == 6
    # Nor is bot-a's claim resolved against y's broker by its key: its id is x's.
    assert main(["claims", "resolve", elsewhere.key, "--store", store_url, *args]) == 1
    with ClaimStore(store_url) as store:
        a = store.get(elsewhere.key)
        assert a is not None and a.state is ClaimState.UNKNOWN and store.position("bot-a", "TQQQ").is_flat
