"""The pure heart of reconciliation: `diff(claims, ledger, snapshot, now, settings) -> actions`.

No database, no network, no clock: the same inputs always give the same actions, and applying
them then diffing again gives nothing new (convergence). Safeguards live here: claims touched
within `recent_activity_secs` are left alone, "absent" and "flat" need two reads a gap apart,
and a possibly truncated open-order list never counts as "no open orders".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from tradeguard.config import Settings
from tradeguard.domain import Claim, LedgerPosition, RejectKind
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState, state_for_order
from tradeguard.reconcile.snapshot import Action, ActionKind, BrokerSnapshot

__all__ = ["diff", "plan"]

_UNRESOLVED = (ClaimState.PENDING, ClaimState.UNKNOWN)
_LIVE = (ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED)


def _refused_for_position(claim: Claim) -> bool:
    # Until the claim store records RejectKind in its own column, the kind is the reason's prefix.
    return claim.reason.startswith(f"rejected ({RejectKind.POSITION})")


def _gap(snapshot: BrokerSnapshot) -> float:
    if snapshot.earlier is None:
        return 0.0
    return (snapshot.taken_at - snapshot.earlier.taken_at).total_seconds()


def _absent_twice(snapshot: BrokerSnapshot, coid: str, settings: Settings) -> bool:
    earlier = snapshot.earlier
    return (
        earlier is not None
        and _gap(snapshot) >= settings.unknown_probe_gap_secs
        and coid in earlier.orders_by_client_id
        and earlier.orders_by_client_id[coid] is None
        and snapshot.orders_by_client_id.get(coid, "missing") is None
    )


def _steady_twice(snapshot: BrokerSnapshot, symbol: str, settings: Settings) -> bool:
    """True when two reads a settle delay apart agree on `symbol` and show no open orders in it."""
    earlier = snapshot.earlier
    return (
        earlier is not None
        and _gap(snapshot) >= settings.settle_delay_secs
        and snapshot.qty(symbol) == earlier.qty(symbol)
        and not snapshot.has_open_orders(symbol)
        and not earlier.has_open_orders(symbol)
    )


def _claim_actions(
    claim: Claim, snapshot: BrokerSnapshot, now: datetime, settings: Settings
) -> tuple[Action | None, bool]:
    """Return the action for one unresolved or live claim, and whether it awaits a second read."""
    coid = claim.client_order_id
    if coid not in snapshot.orders_by_client_id:
        return None, False
    order = snapshot.orders_by_client_id[coid]
    evidence = {"client_order_id": coid, "claim_state": claim.state.value}
    if order is not None:
        state = state_for_order(order.status, order.filled_qty > 0)
        if state is claim.state and order.filled_qty == claim.filled_qty and claim.broker_order_id:
            return None, False
        evidence |= {"order_status": order.status.value, "filled_qty": str(order.filled_qty)}
        reason = f"reconcile: {coid} is {order.status} at the broker (filled {order.filled_qty})"
        return Action(
            ActionKind.ADOPT_ORDER,
            claim.symbol,
            reason,
            claim.agent_id,
            claim.key,
            order,
            order.filled_qty,
            evidence,
        ), False
    age = (now - claim.updated_at).total_seconds()
    if claim.state in _LIVE:
        # The broker acknowledged it once: missing now is an anomaly to report, never NOT_SENT.
        kind, reason = (
            ActionKind.REPORT_MISSING,
            f"reconcile: acknowledged order {coid} is unknown to the broker",
        )
    elif age < settings.unknown_grace_secs:
        return None, False  # a POST still in flight can land after a 404
    else:
        kind, reason = (
            ActionKind.MARK_NOT_SENT,
            f"reconcile: {coid} absent at the broker {age:.0f}s after the send",
        )
    if snapshot.earlier is None:
        return None, True
    if not _absent_twice(snapshot, coid, settings):
        return None, False
    action = Action(
        kind, claim.symbol, f"{reason} on two probes", claim.agent_id, claim.key, evidence=evidence
    )
    return action, False


def _release_action(
    claim: Claim, held: LedgerPosition | None, snapshot: BrokerSnapshot, in_flight: Decimal
) -> Action | None:
    """Re-size an exit the broker refused for position reasons while it still holds shares."""
    if held is None or held.is_flat or held.turn_id != claim.turn_id:
        return None
    pos = snapshot.positions.get(claim.symbol)
    if pos is None or pos.qty == 0 or (pos.qty > 0) != (held.qty > 0):
        return None
    available = abs(pos.qty_available) - in_flight
    qty = min(claim.spec.qty or abs(held.qty), available)
    if qty <= 0:
        return None
    reason = (
        f"reconcile: exit {claim.client_order_id} was refused ({claim.reason}) but the broker holds "
        f"{pos.qty} {claim.symbol}; re-sized to {qty} (qty_available {pos.qty_available})"
    )
    evidence = {
        "broker_qty": str(pos.qty),
        "qty_available": str(pos.qty_available),
        "ledger_qty": str(held.qty),
    }
    return Action(
        ActionKind.RELEASE_EXIT, claim.symbol, reason, claim.agent_id, claim.key, qty=qty, evidence=evidence
    )


def _position_actions(
    symbol: str,
    holders: Sequence[LedgerPosition],
    snapshot: BrokerSnapshot,
    settings: Settings,
    adopt_orphans_to: str | None,
) -> tuple[list[Action], bool]:
    broker_qty = snapshot.qty(symbol)
    ledger_qty = sum((p.qty for p in holders), Decimal(0))
    evidence = {"broker_qty": str(broker_qty), "ledger_qty": str(ledger_qty)}
    if broker_qty == ledger_qty:
        return [], False
    if broker_qty == 0:
        if snapshot.earlier is None:
            return [], True
        if not _steady_twice(snapshot, symbol, settings):
            return [], False
        return [
            Action(
                ActionKind.CLEAR_PHANTOM,
                symbol,
                f"phantom cleared: ledger held {p.qty} {symbol}, broker flat with no open orders "
                f"on two reads "
                f"{_gap(snapshot):.1f}s apart",
                p.agent_id,
                qty=p.qty,
                evidence=evidence | {"turn_id": str(p.turn_id)},
            )
            for p in holders
            if not p.is_flat
        ], False
    if ledger_qty == 0:
        if adopt_orphans_to is not None:
            reason = f"reconcile: adopted orphan {broker_qty} {symbol} into {adopt_orphans_to}'s ledger"
            return [
                Action(
                    ActionKind.ADOPT_ORPHAN,
                    symbol,
                    reason,
                    adopt_orphans_to,
                    qty=broker_qty,
                    evidence=evidence,
                )
            ], False
        reason = f"orphan: broker holds {broker_qty} {symbol}, no ledger does"
        return [Action(ActionKind.REPORT_ORPHAN, symbol, reason, qty=broker_qty, evidence=evidence)], False
    owners = [p for p in holders if not p.is_flat]
    same_side = (broker_qty > 0) == (ledger_qty > 0)
    if same_side and abs(broker_qty) < abs(ledger_qty) and len(owners) == 1:
        # Part of the ledger's position is a phantom (e.g. a phantom topped up by a new entry):
        # with one agent holding the symbol, the excess is plainly theirs to drop.
        if snapshot.earlier is None:
            return [], True
        if not _steady_twice(snapshot, symbol, settings):
            return [], False
        reason = (
            f"phantom trimmed: ledger held {ledger_qty} {symbol}, broker {broker_qty} with no open orders "
            f"on two reads {_gap(snapshot):.1f}s apart"
        )
        excess = broker_qty - ledger_qty
        trim = Action(
            ActionKind.TRIM_PHANTOM, symbol, reason, owners[0].agent_id, qty=excess, evidence=evidence
        )
        return [trim], False
    reason = f"drift: broker holds {broker_qty} {symbol}, ledgers hold {ledger_qty}"
    return [
        Action(ActionKind.REPORT_DRIFT, symbol, reason, qty=broker_qty - ledger_qty, evidence=evidence)
    ], False


def plan(
    claims: Iterable[Claim],
    ledger: Iterable[LedgerPosition],
    snapshot: BrokerSnapshot,
    now: datetime,
    settings: Settings,
    *,
    symbols: Iterable[str] | None = None,
    adopt_orphans_to: str | None = None,
) -> tuple[list[Action], bool]:
    """Return the actions, and whether a second read would let more be decided."""
    wanted = None if symbols is None else set(symbols)
    holders: dict[str, list[LedgerPosition]] = defaultdict(list)
    for pos in ledger:
        holders[pos.symbol].append(pos)
    actions: list[Action] = []
    needs_second_read = False
    busy: set[str] = set()  # symbols with claims in motion: positions there wait for the next pass
    in_flight: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    claim_list = [c for c in claims if wanted is None or c.symbol in wanted]
    for claim in claim_list:
        if claim.kind is Kind.EXIT and claim.state in _UNRESOLVED:
            in_flight[(claim.agent_id, claim.symbol)] += (claim.order_qty or Decimal(0)) - claim.filled_qty
    for claim in sorted(claim_list, key=lambda c: (c.created_at, c.key)):
        recent = (now - claim.updated_at).total_seconds() < settings.recent_activity_secs
        if claim.state in _UNRESOLVED or claim.state in _LIVE:
            if claim.state in _UNRESOLVED or recent:
                busy.add(claim.symbol)
            if recent or (claim.state is ClaimState.PENDING and claim.lease_expires_at > now):
                continue
            action, wait = _claim_actions(claim, snapshot, now, settings)
            needs_second_read |= wait
            if action is not None:
                actions.append(action)
                busy.add(claim.symbol)
        elif claim.state is ClaimState.REJECTED and claim.kind is Kind.EXIT and _refused_for_position(claim):
            mine = next((p for p in holders.get(claim.symbol, []) if p.agent_id == claim.agent_id), None)
            action = _release_action(claim, mine, snapshot, in_flight[(claim.agent_id, claim.symbol)])
            if action is not None:
                actions.append(action)
                busy.add(claim.symbol)
    account_symbols = set(holders) | set(snapshot.positions)
    for symbol in sorted(account_symbols):
        if (wanted is not None and symbol not in wanted) or symbol in busy:
            continue
        found, wait = _position_actions(symbol, holders.get(symbol, []), snapshot, settings, adopt_orphans_to)
        actions.extend(found)
        needs_second_read |= wait
    return actions, needs_second_read


def diff(
    claims: Iterable[Claim],
    ledger: Iterable[LedgerPosition],
    snapshot: BrokerSnapshot,
    now: datetime,
    settings: Settings,
    *,
    symbols: Iterable[str] | None = None,
    adopt_orphans_to: str | None = None,
) -> list[Action]:
    """Return what to do so the claims and ledger agree with the broker snapshot.

    Args:
        claims: Unresolved, live, and position-rejected exit claims.
        ledger: Open ledger positions (every agent sharing the account, or one).
        snapshot: The broker read; `snapshot.earlier` holds a first read when two were taken.
        now: The time of the pass.
        settings: Grace periods, settle delay, recent-activity threshold.
        symbols: Only these symbols (None: all).
        adopt_orphans_to: Adopt broker positions no ledger holds into this agent's ledger.
    """
    return plan(claims, ledger, snapshot, now, settings, symbols=symbols, adopt_orphans_to=adopt_orphans_to)[
        0
    ]
