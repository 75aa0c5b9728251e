"""The pure diff and a claim made on another broker account than the one read (`Claim.coid_scope`).

An agent re-pointed to another account keeps the claims and turns it made on the old one. The
diff of the new account's read leaves them as they are and reports them; claims of scope ""
(before migration 0012, an agent of unknown account) and a read of unknown account keep the
old rules, since nothing tells them apart.
"""

from __future__ import annotations

import dataclasses

import pytest
from mothers import NOW, held, make_claim, order_for, snap

from tradeguard.config import Settings
from tradeguard.domain import Claim
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.reconcile import ActionKind, BrokerSnapshot, diff
from tradeguard.reconcile.diff import plan_read

SETTINGS = Settings()
X, Y = "acct:" + "x" * 16, "acct:" + "y" * 16


def scoped(claim: Claim, scope: str | None) -> Claim:
    return dataclasses.replace(claim, coid_scope=scope)


def on(account: str, snapshot: BrokerSnapshot) -> BrokerSnapshot:
    earlier = (
        None if snapshot.earlier is None else dataclasses.replace(snapshot.earlier, account_scope=account)
    )
    return dataclasses.replace(snapshot, account_scope=account, earlier=earlier)


@pytest.mark.parametrize(
    "state", [ClaimState.UNKNOWN, ClaimState.PENDING, ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED]
)
def test_an_unresolved_or_live_claim_of_another_account_is_only_reported(state: ClaimState) -> None:
    claim = scoped(make_claim(state, age_secs=600), X)
    absent = on(Y, snap(lookups={claim.client_order_id: None}, earlier_gap=5))
    actions = diff([claim], [], absent, NOW, SETTINGS)
    assert [(a.kind, a.claim_key) for a in actions] == [(ActionKind.REPORT_ELSEWHERE, claim.key)]
    # Not even an order under its id at this account is adopted (another account's order).
    found = on(Y, snap(lookups={claim.client_order_id: order_for(claim)}))
    assert [a.kind for a in diff([claim], [], found, NOW, SETTINGS)] == [ActionKind.REPORT_ELSEWHERE]


def test_a_final_or_not_sent_claim_of_another_account_is_left_silently() -> None:
    claims = [scoped(make_claim(s, age_secs=600), X) for s in (ClaimState.NOT_SENT, ClaimState.FILLED)]
    assert (
        diff(claims, [], on(Y, snap(lookups={c.client_order_id: None for c in claims})), NOW, SETTINGS) == []
    )


@pytest.mark.parametrize(
    ("claim_scope", "read_scope"),
    [("", Y), (None, Y), (X, ""), (X, X)],
    ids=["pre-0012", "unread", "unknown-broker", "same"],
)
def test_claims_that_cannot_be_told_apart_keep_the_old_rules(
    claim_scope: str | None, read_scope: str
) -> None:
    claim = scoped(make_claim(ClaimState.UNKNOWN, age_secs=600), claim_scope)
    absent = on(read_scope, snap(lookups={claim.client_order_id: None}, earlier_gap=5))
    assert [a.kind for a in diff([claim], [], absent, NOW, SETTINGS)] == [ActionKind.MARK_NOT_SENT]


def test_a_claim_of_another_account_keeps_no_symbol_waiting() -> None:
    # bot's TQQQ turn is a phantom at this account; an UNKNOWN claim made on another account in
    # TQQQ cannot move this account's position, so the phantom is still found.
    claim = scoped(make_claim(ClaimState.UNKNOWN, age_secs=600), X)
    flat = on(Y, snap({}, earlier_gap=5))
    kinds = {a.kind for a in diff([claim], [held("TQQQ", 6)], flat, NOW, SETTINGS)}
    assert kinds == {ActionKind.REPORT_ELSEWHERE, ActionKind.CLEAR_PHANTOM}


def test_a_turn_of_another_account_is_reported_never_cleared() -> None:
    flat = on(Y, snap({}, earlier_gap=5))
    plan = plan_read([], [held("TQQQ", 6, turn_id=7)], flat, NOW, SETTINGS, off_account_turns={7})
    assert [(a.kind, a.agent_id) for a in plan.actions] == [(ActionKind.REPORT_ELSEWHERE, "bot")]
    assert not plan.needs_second_read
    # Another turn in the symbol (another agent's, on this account) is still compared alone.
    both = plan_read(
        [], [held("TQQQ", 6, turn_id=7), held("TQQQ", 2, turn_id=8, agent="b")], on(Y, snap({"TQQQ": 2})),
        NOW, SETTINGS, off_account_turns={7},
    )  # fmt: skip
    assert [a.kind for a in both.actions] == [ActionKind.REPORT_ELSEWHERE]
