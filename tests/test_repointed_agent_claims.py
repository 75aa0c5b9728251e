"""An agent re-pointed to another broker account: its old account's claims are not the new one's to resolve.

Since migration 0012 each claim records the account its id was claimed on (`coid_scope`). A bot
(same agent id) moved from account x to account y keeps the claims it made on x: UNKNOWN ones
(an answer lost after x accepted the order), SUBMITTED ones resting at x, fills booked from x.
"Not found by client_order_id" at y is no evidence about x: such a claim is never marked
NOT_SENT, resent on y (a second order for one decision, G1), reported missing or adopted on y's
word (G2), and the shares booked from x are never cleared as a phantom by y's flat read (the
clear needs evidence from the account the position is on). The pass reports them as on another
account; x's own broker resolves them. Real parts: two `PaperBroker` accounts, the fault
injector losing an accepted order's answer, real stores (a SQLite file, PostgreSQL).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tradeguard import ManualClock, OrderGateway, Outcome, PaperBroker
from tradeguard.cli import main
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, OrderRequest
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import BrokerUnavailable
from tradeguard.faults import FaultPlan, FaultyBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import ForwardingBroker, account_key_of
from tradeguard.reconcile import ActionKind, Reconciler
from tradeguard.store import ClaimStore

SETTINGS = Settings(recent_activity_secs=0, position_settle_secs=0)
# x accepts the order, then its answer is lost (a read timeout): the claim is UNKNOWN.
LOST_ANSWER = """
faults:
  - route: POST /v2/orders
    nth: 1
    action: accept_then_timeout
  - route: GET /v2/orders:by_client_order_id
    nth: 1
    action: error
    status: 503
"""


def paper(clock: ManualClock) -> PaperBroker:
    return PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)  # type: ignore[arg-type]


def gateway(broker: object, store_url: str, clock: ManualClock) -> OrderGateway:
    return OrderGateway(broker, store_url, agent_id="bot-a", settings=SETTINGS, clock=clock)  # type: ignore[arg-type]


def _unknown_on_x(x: PaperBroker, store_url: str, clock: ManualClock) -> str:
    """bot-a on account x enters SPY; x fills it but the answer and the first lookup are lost."""
    lossy = FaultyBroker(x, FaultPlan.parse(LOST_ANSWER, source="lost.yaml"), clock=clock)
    gw = gateway(lossy, store_url, clock)
    try:
        result = gw.enter("SPY", qty=3, intent="open")
        assert result.outcome is Outcome.UNKNOWN, result.reason
        assert result.claim is not None
        key = result.claim.key
    finally:
        gw.close()
        gw.store.close()
    assert [o.qty for o in x.orders()] == [Decimal(3)]
    return key


def _claim(store_url: str, key: str) -> tuple[ClaimState, Decimal, Decimal]:
    with ClaimStore(store_url) as store:
        claim = store.get(key)
        assert claim is not None
        return claim.state, claim.filled_qty, store.position("bot-a", "SPY").qty


def test_the_new_accounts_pass_leaves_an_unknown_claim_of_the_old_account_unknown(store_url: str) -> None:
    clock = ManualClock()
    x, y = paper(clock), paper(clock)
    key = _unknown_on_x(x, store_url, clock)
    gw = gateway(y, store_url, clock)  # re-pointed: same agent id, account y
    try:
        clock.advance(120)  # past the grace period: an absent order would be settled
        report = gw.reconcile()
        assert _claim(store_url, key)[0] is ClaimState.UNKNOWN  # before: NOT_SENT on y's word (G2)
        elsewhere = [a for a in report.actions if a.kind is ActionKind.REPORT_ELSEWHERE]
        assert [a.claim_key for a in elsewhere] == [key]
        assert report.reads == 1  # nothing about x's order is asked of y
        gw.reconcile()  # and again: nothing changes (convergence)
    finally:
        gw.close()
        gw.store.close()
    assert y.orders() == [] and len(x.orders()) == 1
    assert _claim(store_url, key) == (ClaimState.UNKNOWN, Decimal(0), Decimal(0))
    # Account x's own broker resolves it, in a whole-store pass too (bot-a is registered on y
    # now): its fill reaches the ledger (G2).
    with ClaimStore(store_url, settings=SETTINGS, clock=clock) as store:
        Reconciler(x, store).run()
    assert _claim(store_url, key) == (ClaimState.FILLED, Decimal(3), Decimal(3))


def test_a_retry_of_the_decision_on_the_new_account_sends_nothing(store_url: str) -> None:
    clock = ManualClock()
    x, y = paper(clock), paper(clock)
    key = _unknown_on_x(x, store_url, clock)
    gw = OrderGateway(
        y, store_url, agent_id="bot-a", settings=SETTINGS, clock=clock, reconcile_on_start=False
    )
    try:
        clock.advance(120)
        retry = gw.enter("SPY", qty=3, intent="open")  # before: resent on y, a second order (G1)
        assert retry.outcome is Outcome.UNKNOWN, retry.reason
        assert "another broker account" in retry.reason
        assert gw.resolve_unresolved("SPY") and y.orders() == []
    finally:
        gw.close()
        gw.store.close()
    assert y.orders() == [] and len(x.orders()) == 1
    assert _claim(store_url, key)[0] is ClaimState.UNKNOWN


def _on_x_then_y(x: PaperBroker, store_url: str, clock: ManualClock, *, resting: bool) -> str | None:
    """bot-a on x buys 2 SPY (filled), with a resting take-profit when asked; then re-pointed to y."""
    on_x = gateway(x, store_url, clock)
    try:
        assert on_x.enter("SPY", qty=2, intent="open").outcome is Outcome.SUBMITTED
        if not resting:
            return None
        placed = on_x.exit("SPY", intent="take profit", order_type="limit", limit_price=Decimal(900))
        assert placed.outcome is Outcome.SUBMITTED and placed.claim is not None
        return placed.claim.key
    finally:
        on_x.close()
        on_x.store.close()


def test_the_new_accounts_flat_read_never_clears_the_old_accounts_position(store_url: str) -> None:
    clock = ManualClock()
    x, y = paper(clock), paper(clock)
    _on_x_then_y(x, store_url, clock, resting=False)
    gw = gateway(y, store_url, clock)  # re-pointed to y, which holds nothing
    try:
        for _ in range(2):
            clock.advance(120)
            report = gw.reconcile()
            assert ActionKind.CLEAR_PHANTOM not in {a.kind for a in report.applied}
            assert [a.kind for a in report.problems] == [ActionKind.REPORT_ELSEWHERE]
        # before: cleared as a phantom on y's flat read (G4 needs the word of x, where it is)
        assert gw.position("SPY").qty == 2
        assert gw.reconcile().reads == 1  # known to be x's: no second read waits for y to agree
    finally:
        gw.close()
        gw.store.close()
    held = x.get_position("SPY")
    assert held is not None and held.qty == 2 and y.orders() == []
    with ClaimStore(store_url, settings=SETTINGS, clock=clock) as store:  # x's own pass keeps it
        Reconciler(x, store).run(agent_id="bot-a")
        assert store.position("bot-a", "SPY").qty == 2


def test_an_order_resting_at_the_old_account_is_not_reported_missing_by_the_new_one(store_url: str) -> None:
    clock = ManualClock()
    x, y = paper(clock), paper(clock)
    key = _on_x_then_y(x, store_url, clock, resting=True)
    gw = gateway(y, store_url, clock)
    try:
        clock.advance(120)
        report = gw.reconcile()
        kinds = [a.kind for a in report.actions]
        assert ActionKind.REPORT_MISSING not in kinds  # before: "unknown to the broker" on y's word
        assert [a.claim_key for a in report.actions if a.claim_key] == [key]
        assert ActionKind.REPORT_ELSEWHERE in kinds
        assert gw.position("SPY").qty == 2
    finally:
        gw.close()
        gw.store.close()
    with ClaimStore(store_url) as store:
        exit_claim = store.get(key) if key else None
        assert exit_claim is not None and exit_claim.state is ClaimState.SUBMITTED
        assert exit_claim.coid_scope == account_key_of(x)
    assert y.orders() == [] and len(x.orders()) == 2


class Down(ForwardingBroker):
    """Account x while its API cannot be reached: nothing leaves the process (NOT_SENT)."""

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        raise BrokerUnavailable("connection refused")


def test_a_decision_unsent_on_the_old_account_is_not_sent_on_the_new_one_under_its_claim(
    store_url: str,
) -> None:
    # Its claim (and id) are x's: sent on y under it, y's passes would never resolve its fills.
    clock = ManualClock()
    x, y = paper(clock), paper(clock)
    gw = gateway(Down(x), store_url, clock)
    try:
        first = gw.enter("SPY", qty=1, intent="open")
        assert first.outcome is Outcome.NOT_SENT and first.claim is not None
    finally:
        gw.close()
        gw.store.close()
    gw = gateway(y, store_url, clock)
    try:
        retry = gw.enter("SPY", qty=1, intent="open")  # before: sent on y under x's claim
        assert retry.outcome is Outcome.REJECTED and retry.error is not None
        assert "another broker account" in retry.reason
    finally:
        gw.close()
        gw.store.close()
    assert x.orders() == [] and y.orders() == []
    assert _claim(store_url, first.claim.key)[0] is ClaimState.NOT_SENT


def test_the_cli_reconcile_on_the_new_account_shows_the_old_accounts_claim_and_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("SETTLE_DELAY", "UNKNOWN_PROBE_GAP", "RECENT_ACTIVITY", "POSITION_SETTLE", "UNKNOWN_GRACE"):
        monkeypatch.setenv(f"TRADEGUARD_{name}_SECS", "0")
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    x = PaperBroker(state_path=tmp_path / "x.json")
    y_state = tmp_path / "y.json"
    y = PaperBroker(state_path=y_state)  # account y, a file the CLI opens
    y.set_price("SQQQ", Decimal(10))  # its first change writes the file
    y.close()
    with ClaimStore(url) as store:
        on_x = OrderGateway(x, store, agent_id="bot-a", reconcile_on_start=False)
        assert on_x.enter("SQQQ", qty=2, intent="open").outcome is Outcome.SUBMITTED
        resting = on_x.exit("SQQQ", intent="tp", order_type="limit", limit_price=Decimal(900))
        assert resting.claim is not None
        store.register_account("bot-a", account_key_of(PaperBroker(state_path=y_state)))  # re-pointed
    command = ["reconcile", "--store", url, "--paper-state", str(y_state), "--format", "json"]
    assert main(command) == 1  # a problem for a person: claims of another account
    rows = json.loads(capsys.readouterr().out)
    assert {(r["action"], r["agent"], r["symbol"]) for r in rows} == {("report_elsewhere", "bot-a", "SQQQ")}
    assert len(rows) == 2  # the resting exit's claim and the turn, both x's
    assert any(resting.claim.client_order_id in r["reason"] for r in rows)
    with ClaimStore(url) as store:
        assert store.position("bot-a", "SQQQ").qty == 2  # not cleared on y's flat read
        claim = store.get(resting.claim.key)
        assert claim is not None and claim.state is ClaimState.SUBMITTED
    assert main(["claims", "show", resting.claim.key, "--store", url, "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["claim"]["account"] == account_key_of(x)


def test_a_paper_account_keeps_the_key_a_claim_store_was_given_across_a_restart(tmp_path: Path) -> None:
    # A bot that claimed and died before its first order (nothing changed the account yet): its
    # restart must meet the same account, else its claim is "another account's" for good.
    state = tmp_path / "paper.json"
    first = PaperBroker(state_path=state)
    key = account_key_of(first)  # what a gateway registers, and its claims' coid_scope
    del first  # killed: no close(), no change
    assert account_key_of(PaperBroker(state_path=state)) == key  # before: a new random account
