"""The pure heart of reconciliation: `diff(claims, ledger, snapshot, now, settings) -> actions`.

No database, no network, no clock: the same inputs always give the same actions, and applying
them then diffing again gives nothing new (convergence). Safeguards live here: claims touched
within `recent_activity_secs` are left alone, "absent" and "flat" need two reads a gap apart,
and a possibly truncated open-order list never counts as "no open orders".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from tradeguard.config import Settings
from tradeguard.domain import Claim, LedgerPosition, OrderStatus, symbol_key
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState, state_for_order
from tradeguard.reconcile.positions import gap, position_actions, put_off
from tradeguard.reconcile.snapshot import Action, ActionKind, BrokerSnapshot, PutOff

__all__ = ["Plan", "busy_symbols", "diff", "plan", "plan_read"]

_UNRESOLVED = (ClaimState.PENDING, ClaimState.UNKNOWN)
_LIVE = (ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED)


def _absent_twice(snapshot: BrokerSnapshot, coid: str, settings: Settings) -> bool:
    earlier = snapshot.earlier
    return (
        earlier is not None
        and gap(snapshot) >= settings.unknown_probe_gap_secs
        and coid in earlier.orders_by_client_id
        and earlier.orders_by_client_id[coid] is None
        and snapshot.orders_by_client_id.get(coid, "missing") is None
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
    if claim.state is ClaimState.NOT_SENT:
        return None, False  # still absent: NOT_SENT stands (an order found later is adopted)
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


def _elsewhere(claim: Claim, snapshot: BrokerSnapshot) -> Action:
    """Report a claim made on another broker account than the one read (`Claim.on_other_account`).

    Its agent was re-pointed since: "not found" here says nothing of an order sent there, so
    the claim is neither settled NOT_SENT, reported missing, adopted nor resent on this account's
    word (G1, G2). It stays as it is, visible, until its own account's broker resolves it.
    """
    reason = (
        f"reconcile: {claim.client_order_id} ({claim.state}) was made on another broker account "
        f"({claim.coid_scope}) than this one ({snapshot.account_scope}); left as it is for that "
        "account's broker to resolve"
    )
    evidence = {
        "client_order_id": claim.client_order_id, "claim_state": claim.state.value,
        "claim_account": claim.coid_scope or "", "broker_account": snapshot.account_scope,
    }  # fmt: skip
    return Action(
        ActionKind.REPORT_ELSEWHERE, claim.symbol, reason, claim.agent_id, claim.key,
        qty=claim.order_qty, evidence=evidence,
    )  # fmt: skip


def _turn_elsewhere(pos: LedgerPosition, snapshot: BrokerSnapshot) -> Action:
    """Report a ledger turn holding fills made on another broker account than the one read."""
    reason = (
        f"reconcile: {pos.agent_id}'s {pos.qty} {pos.symbol} (turn {pos.turn_id}) holds fills made on "
        f"another broker account than this one ({snapshot.account_scope}); not compared with it, "
        "never cleared on its word"
    )
    evidence = {"ledger_qty": str(pos.qty), "broker_account": snapshot.account_scope}
    return Action(
        ActionKind.REPORT_ELSEWHERE, pos.symbol, reason, pos.agent_id, qty=pos.qty,
        evidence=evidence, position=pos,
    )  # fmt: skip


def _release_action(
    claim: Claim, holders: Sequence[LedgerPosition], snapshot: BrokerSnapshot, in_flight: Decimal
) -> Action | None:
    """Re-size an exit the broker refused for position reasons while it still holds its shares.

    Shares other agents' ledgers hold on the same side are never this exit's to sell.
    """
    held = next((p for p in holders if p.agent_id == claim.agent_id), None)
    if held is None or held.is_flat or held.turn_id != claim.turn_id:
        return None
    pos = snapshot.position(claim.symbol)
    if pos is None or pos.qty == 0 or (pos.qty > 0) != (held.qty > 0):
        return None
    others = sum(
        (abs(p.qty) for p in holders if p.agent_id != claim.agent_id and (p.qty > 0) == (held.qty > 0)),
        Decimal(0),
    )
    available = abs(pos.qty_available) - in_flight - others
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


@dataclass(slots=True)
class _ClaimPass:
    """What the claims say, before positions are compared."""

    actions: list[Action] = field(default_factory=list)
    needs_second_read: bool = False
    # Claims in motion per symbol (by `symbol_key`, as every map here): positions there wait for
    # the next pass, unless this pass settles every one of them as NOT_SENT (nothing placed: the
    # ledger cannot change).
    moving: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    refused: set[tuple[str, int | None]] = field(default_factory=set)  # (agent, turn) of refused exits


def busy_symbols(
    others: Iterable[Claim], snapshot: BrokerSnapshot, now: datetime, settings: Settings
) -> set[str]:
    """Return the symbols (by `symbol_key`) where other agents' claims may have moved shares unseen.

    A one-agent pass does not look those claims up, and an order of theirs that filled may show
    in the positions read before its agent's ledger books it (it must not read as this agent's
    missed fill). A claim that is unresolved, recently moved, or whose order is not listed open
    with exactly the fills the claim has booked keeps its symbol busy. One acknowledged a while
    ago and resting unchanged (a GTC limit, a stop) moved nothing its ledger lacks: counting it
    kept this agent's partial phantom for as long as the other agent's order rested (audit 21 #4).
    """
    busy: set[str] = set()
    for claim in others:
        key = symbol_key(claim.symbol)
        if key in busy:
            continue
        listed = [
            o for o in snapshot.open_in(claim.symbol).values() if o.client_order_id == claim.client_order_id
        ]
        quiet = (
            claim.state in _LIVE
            and (now - claim.updated_at).total_seconds() >= settings.recent_activity_secs
            and len(listed) == 1
            and listed[0].filled_qty == claim.filled_qty
        )
        if not quiet:
            busy.add(key)
    return busy


def _ended_unfilled(claim: Claim, action: Action) -> bool:
    """Whether adopting `action` ends the claim's order with no fill its ledger lacks.

    Such an order (canceled by hand or by the broker, expired, rejected) moves no more shares
    and the adoption moves no ledger, so the symbol's positions are compared in the same pass:
    otherwise a phantom behind an exit canceled at the broker waited a whole extra period and
    outlived `reconcile_interval_secs` (G4; audit 21 #3).
    """
    order = action.order
    return (
        action.kind is ActionKind.ADOPT_ORDER
        and order is not None
        and order.status.is_terminal
        and order.status is not OrderStatus.REPLACED  # followed to its replacement, which may fill
        and not order.legs
        and order.filled_qty == claim.filled_qty
    )


def _moved_since(claim: Claim, holders: list[LedgerPosition]) -> bool:
    """Whether the agent's turn the claim was for moved (a fill, a correction) after the claim did."""
    for pos in holders:
        if pos.agent_id == claim.agent_id and pos.turn_id == claim.turn_id:
            return pos.updated_at is not None and pos.updated_at > claim.updated_at
    return False


def _this_accounts(claims: list[Claim], snapshot: BrokerSnapshot, reports: list[Action]) -> list[Claim]:
    """Return the claims this read may resolve; report unresolved or live ones of another account.

    A claim made on another account (`Claim.on_other_account`: its agent re-pointed since) is no
    business of this read: its order cannot move this account's positions either, so it keeps no
    symbol waiting. A broker of unknown account (`account_scope` "") tells none apart.
    """
    if not snapshot.account_scope:
        return claims
    here = []
    for claim in claims:
        if not claim.on_other_account(snapshot.account_scope):
            here.append(claim)
        elif claim.state in _UNRESOLVED or claim.state in _LIVE:
            reports.append(_elsewhere(claim, snapshot))
    return here


def _claims_pass(
    claims: list[Claim],
    holders: dict[str, list[LedgerPosition]],
    snapshot: BrokerSnapshot,
    now: datetime,
    settings: Settings,
    *,
    releasing: bool | Collection[str] = True,
) -> _ClaimPass:
    out = _ClaimPass()
    claims = _this_accounts(claims, snapshot, out.actions)
    in_flight: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for claim in claims:
        if claim.kind is Kind.EXIT and claim.state in _UNRESOLVED:
            in_flight[(claim.agent_id, symbol_key(claim.symbol))] += (
                claim.order_qty or Decimal(0)
            ) - claim.filled_qty
    for claim in sorted(claims, key=lambda c: (c.created_at, c.key)):
        key = symbol_key(claim.symbol)
        moving = out.moving[key]
        action: Action | None = None
        if claim.state in _UNRESOLVED or claim.state in _LIVE:
            recent = (now - claim.updated_at).total_seconds() < settings.recent_activity_secs
            if claim.state in _UNRESOLVED or recent:
                moving.add(claim.key)
            if recent or (claim.state is ClaimState.PENDING and claim.lease_expires_at > now):
                continue
            action, wait = _claim_actions(claim, snapshot, now, settings)
            out.needs_second_read |= wait
            # Nothing placed, or an order that ended with no fill the ledger lacks: no ledger can
            # move, so the symbol's positions are compared in this pass.
            if action is not None and (
                action.kind is ActionKind.MARK_NOT_SENT or _ended_unfilled(claim, action)
            ):
                moving.discard(claim.key)
                out.actions.append(action)
                continue
        elif claim.state is ClaimState.NOT_SENT:
            action = _claim_actions(claim, snapshot, now, settings)[0]  # placed late after all?
        elif claim.refused_for_position and claim.kind is Kind.EXIT:
            if not _moved_since(claim, holders.get(key, [])):
                # Evidence of the broker's real position as of the refusal only: a fill booked
                # into the turn after it may not show in a lagging positions read yet (audit 13
                # D1: a scale-in 1 s old was trimmed), so that turn waits like any other.
                out.refused.add((claim.agent_id, claim.turn_id))
            unsold = in_flight[(claim.agent_id, key)]
            action = _release_action(claim, holders.get(key, []), snapshot, unsold)
            released = releasing if isinstance(releasing, bool) else claim.key in releasing
            if action is not None and not released:
                # Proposed only (a pass that does not resend exits): the refused claim placed
                # nothing and nothing will be sent now, so the symbol's positions are compared
                # (a phantom behind the refusal is trimmed) instead of waiting for a release that
                # no ordinary pass applies (audit 12a D4: the symbol was never compared again).
                out.actions.append(action)
                continue
        if action is not None:
            out.actions.append(action)
            moving.add(claim.key)
    return out


@dataclass
class Plan:
    """What one read of the broker decides (`plan`).

    Attributes:
        actions: What to do.
        needs_second_read: Whether a second read a settle delay later would decide more.
        put_off: Symbols not compared: their ledger moved too recently (`positions.put_off`).
    """

    actions: list[Action]
    needs_second_read: bool
    put_off: list[PutOff]


def plan_read(
    claims: Iterable[Claim],
    ledger: Iterable[LedgerPosition],
    snapshot: BrokerSnapshot,
    now: datetime,
    settings: Settings,
    *,
    symbols: Iterable[str] | None = None,
    adopt_orphans_to: str | None = None,
    cleared: Iterable[LedgerPosition] = (),
    busy: Iterable[str] = (),
    moved: Iterable[LedgerPosition] = (),
    releasing: bool | Collection[str] = True,
    off_account_turns: Collection[int] = (),
) -> Plan:
    """Return what one broker read decides (see `diff`), with the symbols it put off.

    Symbols are matched by `symbol_key` (the broker's "BTCUSD" position is the ledger's
    "BTC/USD"); actions name a symbol as the ledger spells it, the broker's for an orphan.
    `releasing`: the pass resends refused exits (`RELEASE_EXIT`; all of them, or only those
    claim keys), so their symbols wait for it; otherwise such a symbol's positions are compared
    in this pass. `off_account_turns`: turn ids holding fills made on another broker account (an agent
    re-pointed since): left out of every comparison with this account's read and reported.
    """
    wanted = None if symbols is None else {symbol_key(s) for s in symbols}
    holders: dict[str, list[LedgerPosition]] = defaultdict(list)
    off_account: list[Action] = []
    for pos in ledger:
        if pos.turn_id is not None and pos.turn_id in off_account_turns:
            if wanted is None or symbol_key(pos.symbol) in wanted:
                off_account.append(_turn_elsewhere(pos, snapshot))
            continue
        holders[symbol_key(pos.symbol)].append(pos)
    recently: dict[str, list[LedgerPosition]] = defaultdict(list)
    for pos in moved:
        recently[symbol_key(pos.symbol)].append(pos)
    claim_list = [c for c in claims if wanted is None or symbol_key(c.symbol) in wanted]
    out = _claims_pass(claim_list, holders, snapshot, now, settings, releasing=releasing)
    actions, needs_second_read = out.actions + off_account, out.needs_second_read
    cleared_list, refused = list(cleared), frozenset(out.refused)
    elsewhere = {symbol_key(s) for s in busy}
    at_broker = snapshot.symbols
    later: list[PutOff] = []
    for key in sorted(set(holders) | set(at_broker)):
        if (wanted is not None and key not in wanted) or out.moving[key]:
            continue
        # Another agent's order in motion may already show at the broker and must not read as a
        # fill this agent missed; but it cannot make the account flat without selling this
        # agent's shares (G3), so a symbol the broker holds none of is still compared (only a
        # phantom clear can come of it, G4).
        if key in elsewhere and key in at_broker:
            continue
        held = holders.get(key, [])
        symbol = held[0].symbol if held else at_broker[key]
        off = put_off(symbol, held, snapshot, now, settings, refused=refused, moved=recently.get(key, []))
        if off is not None:
            later.append(off)
            continue
        found, wait = position_actions(
            symbol, held, snapshot, now, settings, adopt_orphans_to=adopt_orphans_to,
            cleared=cleared_list, refused=refused,
        )  # fmt: skip
        actions.extend(found)
        needs_second_read |= wait
    return Plan(actions, needs_second_read, later)


def plan(
    claims: Iterable[Claim],
    ledger: Iterable[LedgerPosition],
    snapshot: BrokerSnapshot,
    now: datetime,
    settings: Settings,
    *,
    symbols: Iterable[str] | None = None,
    adopt_orphans_to: str | None = None,
    cleared: Iterable[LedgerPosition] = (),
    busy: Iterable[str] = (),
    moved: Iterable[LedgerPosition] = (),
) -> tuple[list[Action], bool]:
    """Return the actions, and whether a second read would let more be decided (`plan_read`)."""
    read = plan_read(
        claims, ledger, snapshot, now, settings,
        symbols=symbols, adopt_orphans_to=adopt_orphans_to, cleared=cleared, busy=busy, moved=moved,
    )  # fmt: skip
    return read.actions, read.needs_second_read


def diff(
    claims: Iterable[Claim],
    ledger: Iterable[LedgerPosition],
    snapshot: BrokerSnapshot,
    now: datetime,
    settings: Settings,
    *,
    symbols: Iterable[str] | None = None,
    adopt_orphans_to: str | None = None,
    cleared: Iterable[LedgerPosition] = (),
    busy: Iterable[str] = (),
    moved: Iterable[LedgerPosition] = (),
) -> list[Action]:
    """Return what to do so the claims and ledger agree with the broker snapshot.

    Args:
        claims: Unresolved and live claims, position-rejected exits, recent NOT_SENT claims.
        ledger: Open ledger positions (every agent sharing the account, or one).
        snapshot: The broker read; `snapshot.earlier` holds a first read when two were taken.
        now: The time of the pass.
        settings: Grace periods, settle delay, recent-activity threshold.
        symbols: Only these symbols (None: all).
        adopt_orphans_to: Adopt broker positions no ledger holds into this agent's ledger.
        cleared: Turns the reconciler cleared recently while they held shares (re-adoption).
        busy: Symbols where claims not given here (other agents') are in motion: their
            positions are not compared in this pass.
        moved: Turns (any agent's on the account, open or closed) a fill or correction moved
            recently: their symbols wait until `position_settle_secs` after the move.
    """
    return plan_read(
        claims, ledger, snapshot, now, settings,
        symbols=symbols, adopt_orphans_to=adopt_orphans_to, cleared=cleared, busy=busy, moved=moved,
    ).actions  # fmt: skip
