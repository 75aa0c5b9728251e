"""The invariant checker of a chaos run: G1-G4 from the claim store and the broker's account.

Guarded runs are checked against the claims (every broker order belongs to one decision's
claim); unguarded runs against the send log (which decision each plain order was sent for), with
the same rules, so both report the same kinds of violation on the same seeds.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from tradeguard.chaos.tap import Ask
from tradeguard.domain import BrokerOrder, BrokerPosition, symbol_key
from tradeguard.domain.lifecycle import ClaimState

if TYPE_CHECKING:
    from tradeguard.chaos.unguarded import SendLog
    from tradeguard.ports import ClaimLedger

__all__ = ["Evidence", "Guarantee", "Violation", "check_guarded", "check_plain"]


class Guarantee(enum.StrEnum):
    """The guarantee a violation breaks."""

    G1 = "G1 at most one order per decision"
    G2 = "G2 nothing lost, nothing guessed"
    G3 = "G3 no accidental short"
    G4 = "G4 no phantom"
    BOT = "the strategy's own error: an exception no injected fault explains"


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken guarantee, in a sentence."""

    guarantee: Guarantee
    detail: str

    def __str__(self) -> str:
        return f"{self.guarantee.name}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the broker saw, and the strategy decision each client id was first sent for."""

    orders: Sequence[BrokerOrder]
    positions: Sequence[BrokerPosition]
    asks: Sequence[Ask]
    decisions: Mapping[str, tuple[str, str, str]]


def check_guarded(evidence: Evidence, store: ClaimLedger, agent_id: str) -> list[Violation]:
    """Check a guarded run after its final reconcile."""
    claims = {c.client_order_id: c for c in store.list_claims(agent_id=agent_id)}
    found: list[Violation] = []
    # A claim first sent outside a strategy call (a reconcile pass resending it) is its own decision.
    decisions: dict[str, tuple[object, ...]] = {
        coid: (str(c.kind), c.symbol, c.intent) for coid, c in claims.items()
    }
    decisions.update(evidence.decisions)
    found += _g1(evidence.orders, decisions)
    at_broker = {o.client_order_id for o in evidence.orders}
    for coid, claim in claims.items():
        if claim.state is ClaimState.PENDING:
            found.append(
                Violation(Guarantee.G2, f"{coid} ({claim.intent}) left PENDING after the final reconcile")
            )
        elif claim.state in (ClaimState.NOT_SENT, ClaimState.REJECTED) and coid in at_broker:
            found.append(
                Violation(Guarantee.G2, f"{coid} ({claim.intent}) is {claim.state} but the broker has it")
            )
    found += _g3(evidence)
    ledger = {p.symbol: p.qty for p in store.positions(agent_id) if not p.is_flat}
    found += _g4(ledger, evidence.positions)
    return found


def check_plain(evidence: Evidence, log: SendLog, held: Mapping[str, Decimal]) -> list[Violation]:
    """Check an unguarded run: the plain bot's send log and memory stand for claims and ledger."""
    found = _g1(evidence.orders, dict(evidence.decisions))
    at_broker = {o.client_order_id for o in evidence.orders}
    for coid in sorted(log.maybe_sent & at_broker):
        kind, symbol, intent = log.decisions[coid]
        found.append(Violation(Guarantee.G2, f"{coid} ({kind} {symbol} {intent}) placed, the bot never knew"))
    found += _g3(evidence)
    found += _g4({s: q for s, q in held.items() if q != 0}, evidence.positions)
    return found


def _g1(orders: Sequence[BrokerOrder], decisions: Mapping[str, tuple[object, ...]]) -> list[Violation]:
    found = []
    coids = Counter(o.client_order_id for o in orders)
    found += [Violation(Guarantee.G1, f"two orders with client id {c}") for c, n in coids.items() if n > 1]
    per_decision: Counter[tuple[object, ...]] = Counter()
    for order in orders:
        decision = decisions.get(order.client_order_id)
        if decision is None:
            found.append(Violation(Guarantee.G1, f"order {order.client_order_id} belongs to no decision"))
        else:
            per_decision[decision] += 1
    for decision, count in per_decision.items():
        if count > 1:
            what = " ".join(str(part) for part in decision if part is not None)
            found.append(Violation(Guarantee.G1, f"{count} broker orders for one decision: {what}"))
    return found


def _g3(evidence: Evidence) -> list[Violation]:
    # A `sell_to_open` is a short the bot meant (`enter(side="sell")`): G3 is about accidental
    # ones, sells that close or say nothing and ask more than is held (audit 14b H2).
    found = [
        Violation(Guarantee.G3, f"sell {a.client_order_id} asked {a.qty} {a.symbol} with {a.available} held")
        for a in evidence.asks
        if a.qty > a.available and not a.opens
    ]
    meant = {symbol_key(a.symbol) for a in evidence.asks if a.opens}
    found += [
        Violation(Guarantee.G3, f"the account is short {-p.qty} {p.symbol}")
        for p in evidence.positions
        if p.qty < 0 and symbol_key(p.symbol) not in meant
    ]
    return found


def _g4(ledger: Mapping[str, Decimal], positions: Sequence[BrokerPosition]) -> list[Violation]:
    # Alpaca lists "BTC/USD" as "BTCUSD": the broker's position is named as the ledger names it.
    names = {symbol_key(s): s for s in ledger}
    broker = {names.get(symbol_key(p.symbol), p.symbol): p.qty for p in positions if p.qty != 0}
    return [
        Violation(
            Guarantee.G4,
            f"{symbol}: the bot's ledger says {ledger.get(symbol, 0)}, the broker {broker.get(symbol, 0)}",
        )
        for symbol in sorted(set(ledger) | set(broker))
        if ledger.get(symbol, Decimal(0)) != broker.get(symbol, Decimal(0))
    ]
