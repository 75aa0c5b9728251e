"""Whose shares a close outside the bots took: shared-symbol drift attributed from order history.

Several agents on one account hold a symbol; a person (or another tool) closes the account's
whole position; before any reconcile pass has seen the account flat twice, one agent buys again.
The positions read now shows only the new shares, every ledger still holds its old ones too, and
positions alone cannot say whose shares differ (`positions.position_actions` reports drift). The
account's order history can: it shows the order that closed the position, outside every claim,
and which of each agent's fills came before it (sold by the close) and after it (still held).

Pure, like `diff`: the runner lists the orders and looks up their claims; this decides. The
attribution is made only when the history proves it, else the drift stays reported for an
operator (G4 never clears a real position on a guess):

- every agent holding the symbol holds it on one side, in a turn with an opening time;
- exactly one order that no claim names filled in the symbol since the earliest such turn
  opened, on the side that reduces the holders' position (the close);
- the turns that make up the position since then (the holders', and any turn closed by now that
  traded since, e.g. one a previous pass cleared this way) sold and bought with their own orders
  exactly what the close then sold: it left the account flat, so every share held went with it;
- a turn closed by now kept nothing of what it traded after the close;
- every listed order with a fill has ended and is booked in full in its claim, and its last
  change is older than `position_settle_secs` before the positions read (the read shows it);
- what the holders' turns filled after the close sums to the broker's position, each on the
  broker's side and no more than its ledger holds.

Each holder's ledger then becomes what its turn bought after the close: a turn with nothing
since is cleared, one with fills since is trimmed to them. The runner applies each as a
compare-and-set on the position it was computed from.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, Claim, LedgerPosition, Side
from tradeguard.reconcile.snapshot import Action, ActionKind

__all__ = ["Filled", "attribute_close"]


@dataclass(frozen=True, slots=True)
class Filled:
    """One order of the symbol with filled shares, as the broker lists it, and the claim naming it.

    Attributes:
        order: The broker's order (current: orders do not trail as positions do).
        claim: The claim whose client_order_id it carries, or None for an order outside every claim.
    """

    order: BrokerOrder
    claim: Claim | None


def _signed(order: BrokerOrder) -> Decimal:
    return order.filled_qty if order.side is Side.BUY else -order.filled_qty


_Turn = tuple[str, int | None]  # (agent_id, turn_id)


@dataclass(frozen=True, slots=True)
class _History:
    """The symbol's fills sorted out: the one close outside the claims, and each turn's orders."""

    close: BrokerOrder
    at: datetime  # the close's last change: when it filled
    turns: dict[_Turn, list[BrokerOrder]]


def _history(
    filled: Sequence[Filled],
    held: dict[_Turn, LedgerPosition],
    start: datetime,
    settled: datetime,
    long: bool,
) -> _History | None:
    """Sort `filled` into the close and the turns that make up the position since `start`, or None."""
    closes: list[BrokerOrder] = []
    by_turn: dict[_Turn, list[BrokerOrder]] = defaultdict(list)
    for item in filled:
        order, claim = item.order, item.claim
        if not order.status.is_terminal or order.updated_at is None or order.updated_at > settled:
            return None  # still filling, or a fill the positions read may not show yet
        if claim is None:
            if order.updated_at >= start:  # earlier ones are behind every holder's turn
                closes.append(order)
        elif claim.filled_qty != order.filled_qty:
            return None  # a fill its agent's ledger has not booked yet
        else:
            by_turn[(claim.agent_id, claim.turn_id)].append(order)
    if len(closes) != 1 or closes[0].side is not (Side.SELL if long else Side.BUY):
        return None
    # The turns that make up the account's position since the holders' turns opened: theirs, and
    # any other (closed by now) that traded since, with all of its listed orders.
    turns = {
        key: orders
        for key, orders in by_turn.items()
        if key in held or any(o.updated_at is not None and o.updated_at >= start for o in orders)
    } | {key: [] for key in held if key not in by_turn}
    if any(turn_id is None for _agent, turn_id in turns):
        return None
    (close,) = closes
    assert close.updated_at is not None  # checked above
    return _History(close, close.updated_at, turns)


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
    held = {(p.agent_id, p.turn_id): p for p in holders}
    settled = read_at - timedelta(seconds=settings.position_settle_secs)
    history = _history(filled, held, min(opened), settled, long)
    if history is None:
        return None
    at = history.at
    before = dict.fromkeys(history.turns, Decimal(0))
    after = dict.fromkeys(history.turns, Decimal(0))
    for key, orders in history.turns.items():
        for order in orders:
            assert order.updated_at is not None  # checked in `_history`
            (before if order.updated_at <= at else after)[key] += _signed(order)
    if sum(before.values(), Decimal(0)) + _signed(history.close) != 0:
        return None  # the close did not leave the account flat by these turns' own orders
    if any(after[key] for key in history.turns if key not in held):
        return None  # a turn closed since holds nothing, so it bought nothing it kept since
    if sum((after[key] for key in held), Decimal(0)) != broker_qty:
        return None
    if any(
        after[key] and ((after[key] > 0) != long or abs(after[key]) > abs(p.qty)) for key, p in held.items()
    ):
        return None  # more than a ledger holds: not a phantom this explains
    return _corrections(symbol, held, before, after, history, broker_qty=broker_qty)


def _corrections(
    symbol: str,
    held: dict[_Turn, LedgerPosition],
    before: dict[_Turn, Decimal],
    after: dict[_Turn, Decimal],
    history: _History,
    *,
    broker_qty: Decimal,
) -> list[Action]:
    """One action per holder whose ledger is not what its turn bought after the close."""
    close, at = history.close, history.at
    evidence = {
        "broker_qty": str(broker_qty),
        "ledger_qty": str(sum((p.qty for p in held.values()), Decimal(0))),
        "closed_by": close.client_order_id or close.id,
        "closed_qty": str(close.filled_qty),
        "closed_at": history.at.isoformat(),
    }
    actions: list[Action] = []
    for key, pos in held.items():
        left = after[key]
        if left == pos.qty:
            continue
        why = (
            f"{pos.agent_id}'s {before[key]} {symbol} went with order {evidence['closed_by']}, which "
            f"closed the account's {close.filled_qty} outside the bots at {at.isoformat()}"
        )
        detail = evidence | {"turn_id": str(pos.turn_id), "bought_since": str(left)}
        if left == 0:
            reason = f"phantom cleared: {why}; nothing of its turn was bought since"
            actions.append(Action(ActionKind.CLEAR_PHANTOM, pos.symbol, reason, pos.agent_id,
                                  qty=pos.qty, evidence=detail, position=pos))  # fmt: skip
        else:
            reason = f"phantom trimmed: {why}; its turn holds the {left} bought since"
            actions.append(Action(ActionKind.TRIM_PHANTOM, pos.symbol, reason, pos.agent_id,
                                  qty=left - pos.qty, evidence=detail, position=pos))  # fmt: skip
    return actions
