"""Whose shares a close outside the bots took: shared-symbol drift attributed from order history.

Several agents on one account hold a symbol; a person (or another tool) closes the account's
whole position; before any reconcile pass has seen the account flat twice, one agent buys again.
The positions read now shows only the new shares, every ledger still holds its old ones too, and
positions alone cannot say whose shares differ (`positions.position_actions` reports drift). The
account's order history can. Orders are current and complete where positions trail: the
account's position just after an order filled is the broker's position now less every fill
since. So when the last order outside every claim left the account flat, every share any turn
held before it went with it, and each agent holds exactly what its own orders filled since.

Pure, like `diff`: the runner lists the orders and looks up their claims; this decides. The
attribution is made only when the history proves it, else the drift stays reported for an
operator (G4 never clears a real position on a guess):

- every agent holding the symbol holds it on one side, in a turn with an opening time;
- the last order that no claim names, among the symbol's orders with fills, filled after the
  earliest such turn opened, on the side that reduces the holders' position (the close), and
  no claimed order filled at the same instant (their order would be unknown);
- every listed order with a fill has ended and is booked in full in its claim, and its last
  change is older than `position_settle_secs` before the positions read (the read shows it);
- the claimed orders that filled after the close, each booked in a turn, sum to the broker's
  position: the close left the account flat (a partial close by hand does not);
- a turn closed by now kept nothing of what it filled after the close, and what each holder's
  turn filled since is on the holders' side and no more than its ledger holds.

Each holder's ledger then becomes what its turn filled after the close: a turn with nothing
since is cleared, one with fills since is trimmed to them. The runner applies each as a
compare-and-set on the position it was computed from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, Claim, LedgerPosition, Side
from tradeguard.reconcile.snapshot import Action, ActionKind

__all__ = ["CLOSED_BY", "Filled", "attribute_close", "attributed"]

# Evidence of an attribution: the order outside the bots that left the account flat.
CLOSED_BY = "closed_by"

_Turn = tuple[str, int | None]  # (agent_id, turn_id)


@dataclass(frozen=True, slots=True)
class Filled:
    """One order of the symbol with filled shares, as the broker lists it, and the claim naming it.

    Attributes:
        order: The broker's order (current: orders do not trail as positions do).
        claim: The claim whose client_order_id it carries, or None for an order outside every claim.
    """

    order: BrokerOrder
    claim: Claim | None


def attributed(action: Action) -> bool:
    """Whether `action` is a ledger correction this module proved from the order history."""
    return action.kind in (ActionKind.CLEAR_PHANTOM, ActionKind.TRIM_PHANTOM) and CLOSED_BY in action.evidence


def _signed(order: BrokerOrder) -> Decimal:
    return order.filled_qty if order.side is Side.BUY else -order.filled_qty


def _last_close(filled: Sequence[Filled], settled: datetime) -> tuple[BrokerOrder, datetime] | None:
    """The last order outside every claim and when it filled; None unless every listed order is settled.

    Settled: ended, booked in full in its claim, last changed by `settled` (the read shows it).
    """
    last: tuple[BrokerOrder, datetime] | None = None
    for item in filled:
        order, claim, at = item.order, item.claim, item.order.updated_at
        if not order.status.is_terminal or at is None or at > settled:
            return None  # still filling, or a fill the positions read may not show yet
        if claim is not None and claim.filled_qty != order.filled_qty:
            return None  # a fill its agent's ledger has not booked yet
        if claim is None and (last is None or at > last[1]):
            last = (order, at)
    if last is None or any(i.order.updated_at == last[1] and i.order is not last[0] for i in filled):
        return None  # nothing outside, or an order filled at the same instant: which came first is unknown
    return last


def attribute_close(
    symbol: str,
    holders: Sequence[LedgerPosition],
    filled: Sequence[Filled],
    broker_qty: Decimal,
    *,
    read_at: datetime,
    settings: Settings,
) -> list[Action] | None:
    """Return the corrections the order history proves for a shared symbol's drift, or None.

    Args:
        symbol: The symbol.
        holders: Every agent's open, non-flat position in it on the account.
        filled: The symbol's orders with fills since before the earliest holder's turn opened,
            with their claims (see `Filled`).
        broker_qty: The broker's position, from a read taken at `read_at`.
        read_at: When the positions read began.
        settings: `position_settle_secs`, how long a positions read may trail a fill.

    Returns:
        One action per holder whose ledger differs from what the history leaves it, or None when
        the history does not prove whose shares the close took (see the module docstring).
    """
    if len(holders) < 2:
        return None  # one holder: the one-holder rules of `position_actions` decide
    long = holders[0].qty > 0
    opened = [p.opened_at for p in holders if p.opened_at is not None]
    if len(opened) != len(holders) or any((p.qty > 0) != long for p in holders):
        return None
    last = _last_close(filled, read_at - timedelta(seconds=settings.position_settle_secs))
    if last is None:
        return None
    close, at = last
    if at < min(opened) or close.side is not (Side.SELL if long else Side.BUY):
        return None  # before every holder's turn, or not a sale of what they hold
    since: dict[_Turn, Decimal] = {}
    for item in filled:
        order, claim = item.order, item.claim
        if claim is not None and order.updated_at is not None and order.updated_at > at:
            if claim.turn_id is None:
                return None  # a fill in no turn: whose shares it moved is unknown
            key: _Turn = (claim.agent_id, claim.turn_id)
            since[key] = since.get(key, Decimal(0)) + _signed(order)
    if sum(since.values(), Decimal(0)) != broker_qty:
        return None  # the close did not leave the account flat (or the history is not complete)
    held = {(p.agent_id, p.turn_id): p for p in holders}
    if any(qty for key, qty in since.items() if key not in held):
        return None  # a turn closed by now would still hold what it filled since
    for key, pos in held.items():
        left = since.get(key, Decimal(0))
        if left and ((left > 0) != long or abs(left) > abs(pos.qty)):
            return None  # more than a ledger holds: not a phantom this explains
    return _corrections(symbol, held, since, close, at, broker_qty=broker_qty)


def _corrections(
    symbol: str,
    held: dict[_Turn, LedgerPosition],
    since: dict[_Turn, Decimal],
    close: BrokerOrder,
    closed_at: datetime,
    *,
    broker_qty: Decimal,
) -> list[Action]:
    """One action per holder whose ledger is not what its turn filled after the close."""
    at = closed_at.isoformat()
    closed_by = close.client_order_id or close.id
    evidence = {
        "broker_qty": str(broker_qty),
        "ledger_qty": str(sum((p.qty for p in held.values()), Decimal(0))),
        CLOSED_BY: closed_by,
        "closed_qty": str(close.filled_qty),
        "closed_at": at,
    }
    actions: list[Action] = []
    for key, pos in held.items():
        left = since.get(key, Decimal(0))
        if left == pos.qty:
            continue
        why = (
            f"{pos.agent_id}'s {pos.qty - left} {symbol} held before order {closed_by} went with it: "
            f"outside the bots, it left the account flat at {at}"
        )
        detail = evidence | {"turn_id": str(pos.turn_id), "filled_since": str(left)}
        if left == 0:
            reason = f"phantom cleared: {why}; its turn filled nothing since"
            actions.append(Action(ActionKind.CLEAR_PHANTOM, pos.symbol, reason, pos.agent_id,
                                  qty=pos.qty, evidence=detail, position=pos))  # fmt: skip
        else:
            reason = f"phantom trimmed: {why}; its turn holds the {left} filled since"
            actions.append(Action(ActionKind.TRIM_PHANTOM, pos.symbol, reason, pos.agent_id,
                                  qty=left - pos.qty, evidence=detail, position=pos))  # fmt: skip
    return actions
