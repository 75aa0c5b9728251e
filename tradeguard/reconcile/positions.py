"""The position half of the reconcile diff: one symbol's ledger holders against the broker.

Pure, like `diff`. The rules, in the order they are tried:

- Ledger and broker agree: nothing.
- Never on a symbol where a turn moved (a fill, a correction) within `position_settle_secs`,
  a holder's or any other agent's on the account, closed ones included: Alpaca's positions
  endpoint trails fills by seconds, so a fresh fill can read as flat twice (G4: a real position
  is never cleared on position reads alone), and another agent's just-sold shares can still
  read as held (never booked into this agent as a missed fill).
- Broker flat, on two reads a settle delay apart with no order filling in between
  (`steady_twice`: resting orders that never filled do not count): every holder's turn is a
  phantom and is cleared.
- Nobody holds it: a position some agent's ledger cleared recently (`readopt_window_secs`) at
  exactly this size is that agent's, read too early: re-adopted (the runner first checks that no
  order outside that agent's claims filled in the symbol since the clear). Otherwise adopted into
  `adopt_orphans_to`, or reported.
- One agent holds it on the broker's side: its ledger is corrected to the broker's quantity,
  down (a partial phantom) or up (a fill the ledger missed), on two steady reads.
- Several agents: the difference is taken from the one agent the evidence names (its exit was
  refused as position-related in its open turn); if none or several, the drift is reported,
  naming every agent. The runner then asks the account's order history whether a close outside
  the bots explains it (`reconcile.attribute`); if not, an operator settles it (`tradeguard settle`).

Every correction carries the position it was computed from; the runner applies it as a
compare-and-set, so a fill between the reads drops the action for this pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from tradeguard.config import Settings
from tradeguard.domain import LedgerPosition, ledger_symbol, same_symbol
from tradeguard.reconcile.snapshot import Action, ActionKind, BrokerSnapshot, PutOff

__all__ = ["CLEARED_AT", "CLEARED_TURN", "gap", "position_actions", "put_off", "steady_twice"]

# Evidence of a re-adoption: the cleared turn, and when it was cleared (ISO 8601, UTC). The
# runner re-adopts only if no order outside that agent's claims filled in the symbol since.
CLEARED_TURN = "cleared_turn"
CLEARED_AT = "cleared_at"


def gap(snapshot: BrokerSnapshot) -> float:
    """Return the seconds between the snapshot's two reads (0 with one read)."""
    if snapshot.earlier is None:
        return 0.0
    return (snapshot.taken_at - snapshot.earlier.taken_at).total_seconds()


def steady_twice(snapshot: BrokerSnapshot, symbol: str, settings: Settings) -> bool:
    """True when two reads a settle delay apart agree on `symbol` and no order moved it between.

    The open orders are what could fill between (or just before) the reads, so they must be the
    same orders in both reads, each with the same fills in both, and both lists complete. A
    resting order that has never filled (another agent's GTC limit far from the market, a stop)
    moves no shares; nor does one whose fills are the same in both reads and whose last change
    is older than `position_settle_secs` before the first (a person's order that filled in part
    and rests: the positions endpoint, which trails fills by up to that, shows those fills in
    both reads). Were such orders enough to refuse, a phantom would outlive every reconcile
    interval while anybody on the account kept one open (G4; audit 12a D3). An order that filled
    between the reads or just before them, one that came or went, or a list cut by a page limit
    still refuses.
    """
    earlier = snapshot.earlier
    if earlier is None or gap(snapshot) < settings.settle_delay_secs:
        return False
    if snapshot.qty(symbol) != earlier.qty(symbol):
        return False
    if not (snapshot.open_orders_complete and earlier.open_orders_complete):
        return False
    now, before = snapshot.open_in(symbol), earlier.open_in(symbol)
    if now.keys() != before.keys():
        return False
    settled = earlier.taken_at - timedelta(seconds=settings.position_settle_secs)
    for oid, order in now.items():
        was = before[oid]
        if order.filled_qty != was.filled_qty:
            return False
        if was.filled_qty and (was.updated_at is None or was.updated_at > settled):
            return False
    return True


def put_off(
    symbol: str,
    holders: Sequence[LedgerPosition],
    snapshot: BrokerSnapshot,
    now: datetime,
    settings: Settings,
    *,
    refused: frozenset[tuple[str, int | None]],
    moved: Sequence[LedgerPosition] = (),
) -> PutOff | None:
    """Return why `symbol` is not compared in this pass, or None when it is.

    Ledger and broker read differ, but a turn in the symbol moved within the settle horizon with
    no other evidence (Alpaca's positions endpoint trails fills): a holder's, or one in `moved`
    (every agent's on the account, open or closed: another agent's exit that just filled may
    still read as held). An exit the broker refused as position-related in a holder's turn is
    such evidence: order validation reads the broker's real position.
    """
    owners = [p for p in holders if not p.is_flat]
    ledger_qty = sum((p.qty for p in owners), Decimal(0))
    broker_qty = snapshot.qty(symbol)
    if agrees(broker_qty, owners):
        return None
    horizon = timedelta(seconds=settings.position_settle_secs)
    ends = [
        p.updated_at + horizon
        for p in (*owners, *moved)
        if p.updated_at is not None
        and p.updated_at + horizon > now
        and (p.agent_id, p.turn_id) not in refused
    ]
    return PutOff(symbol, ledger_qty, broker_qty, max(ends)) if ends else None


def agrees(broker_qty: Decimal, owners: Sequence[LedgerPosition]) -> bool:
    """Whether the ledgers holding a symbol agree with the broker: the same total, each on its side.

    Equal totals are not enough: one agent long 10 and another short 10 sum to a flat broker,
    yet both ledgers are wrong (an exit that filled beyond its own ledger crossed zero, e.g. an
    order replaced by hand to a larger size). An account holds one side of a symbol, so a
    ledger on the other side of the broker's position, or any ledger while the broker is flat,
    is drift to compare (G4).
    """
    if broker_qty != sum((p.qty for p in owners), Decimal(0)):
        return False
    if broker_qty == 0:
        return not owners
    return all((p.qty > 0) == (broker_qty > 0) for p in owners)


def _names(holders: Iterable[LedgerPosition]) -> str:
    return ", ".join(f"{p.agent_id} {p.qty}" for p in holders)


def position_actions(
    symbol: str,
    holders: Sequence[LedgerPosition],
    snapshot: BrokerSnapshot,
    now: datetime,
    settings: Settings,
    *,
    adopt_orphans_to: str | None,
    cleared: Sequence[LedgerPosition] = (),
    refused: frozenset[tuple[str, int | None]] = frozenset(),
) -> tuple[list[Action], bool]:
    """Return the actions for one symbol, and whether a second read would decide more.

    The caller asked `put_off` first: a symbol whose ledger moved too recently is not compared.

    Args:
        symbol: The symbol.
        holders: Every agent's open position in it (flat ones may be included).
        snapshot: The broker read (with `earlier` when two were taken).
        now: The time of the pass.
        settings: Settle delay and horizon.
        adopt_orphans_to: Take positions no ledger holds into this agent's ledger.
        cleared: Turns in this symbol the reconciler cleared recently while they held shares.
        refused: (agent, turn) pairs whose exit the broker refused as position-related.
    """
    broker_qty = snapshot.qty(symbol)
    owners = [p for p in holders if not p.is_flat]
    ledger_qty = sum((p.qty for p in owners), Decimal(0))
    evidence = {"broker_qty": str(broker_qty), "ledger_qty": str(ledger_qty)}
    if agrees(broker_qty, owners):
        return [], False
    needs_second = snapshot.earlier is None
    steady = steady_twice(snapshot, symbol, settings)
    if broker_qty == 0:
        if not steady:
            return [], needs_second
        return [
            Action(
                ActionKind.CLEAR_PHANTOM,
                p.symbol,  # as this holder's ledger spells it (the turn to close)
                f"phantom cleared: ledger held {p.qty} {p.symbol}, broker flat on two reads "
                f"{gap(snapshot):.1f}s apart with no order filling in between",
                p.agent_id,
                qty=p.qty,
                evidence=evidence | {"turn_id": str(p.turn_id)},
                position=p,
            )
            for p in owners
        ], False
    if not owners:
        return _orphan(
            symbol, broker_qty, snapshot, settings,
            adopt_orphans_to=adopt_orphans_to, cleared=cleared, evidence=evidence,
        )  # fmt: skip
    same_side = all((p.qty > 0) == (broker_qty > 0) for p in owners)
    if same_side and len(owners) == 1:
        if not steady:
            return [], needs_second
        (owner,) = owners
        kind = ActionKind.TRIM_PHANTOM if abs(broker_qty) < abs(owner.qty) else ActionKind.ADOPT_DRIFT
        what = "phantom trimmed" if kind is ActionKind.TRIM_PHANTOM else "missed fill adopted"
        reason = (
            f"{what}: {owner.agent_id}'s ledger held {owner.qty} {symbol}, broker {broker_qty} on two "
            f"reads {gap(snapshot):.1f}s apart with no order filling in between"
        )
        return [Action(kind, symbol, reason, owner.agent_id, qty=broker_qty - owner.qty, evidence=evidence,
                       position=owner)], False  # fmt: skip
    named = [p for p in owners if (p.agent_id, p.turn_id) in refused]
    excess = ledger_qty - broker_qty
    if same_side and len(named) == 1 and abs(excess) > 0 and (excess > 0) == (broker_qty > 0):
        if not steady:
            return [], needs_second
        (owner,) = named
        cut = excess if abs(excess) <= abs(owner.qty) else owner.qty
        reason = (
            f"phantom trimmed: the broker holds {broker_qty} {symbol} for {_names(owners)}; "
            f"{owner.agent_id}'s exit was refused as position-related, so the {excess} missing are its"
        )
        return [Action(ActionKind.TRIM_PHANTOM, symbol, reason, owner.agent_id, qty=-cut,
                       evidence=evidence | {"agents": _names(owners)}, position=owner)], False  # fmt: skip
    reason = (
        f"drift: broker holds {broker_qty} {symbol}, ledgers hold {ledger_qty} ({_names(owners)}); "
        "no evidence says whose shares differ: settle with `tradeguard settle`"
    )
    agents = evidence | {"agents": _names(owners)}
    return [
        Action(ActionKind.REPORT_DRIFT, symbol, reason, qty=broker_qty - ledger_qty, evidence=agents)
    ], False


def _orphan(
    symbol: str,
    broker_qty: Decimal,
    snapshot: BrokerSnapshot,
    settings: Settings,
    *,
    adopt_orphans_to: str | None,
    cleared: Sequence[LedgerPosition],
    evidence: dict[str, str],
) -> tuple[list[Action], bool]:
    matches: dict[str, LedgerPosition] = {}  # each agent's newest turn of that size
    for p in cleared:
        if same_symbol(p.symbol, symbol) and p.qty == broker_qty:
            matches.setdefault(p.agent_id, p)
    if len(matches) == 1:
        if not steady_twice(snapshot, symbol, settings):
            return [], snapshot.earlier is None
        ((agent, turn),) = matches.items()
        reason = (
            f"re-adopted {broker_qty} {turn.symbol} into {agent}'s ledger: the broker holds exactly the "
            f"position cleared from it earlier (its positions read trailed the fills)"
        )
        flat = LedgerPosition(agent, turn.symbol, Decimal(0), None, None)
        cleared_at = "" if turn.updated_at is None else turn.updated_at.isoformat()
        found = evidence | {CLEARED_TURN: str(turn.turn_id), CLEARED_AT: cleared_at}
        return [Action(ActionKind.ADOPT_ORPHAN, turn.symbol, reason, agent, qty=broker_qty, evidence=found,
                       position=flat)], False  # fmt: skip
    if adopt_orphans_to is not None:
        symbol = ledger_symbol(symbol)  # booked as the ledger spells it: the broker's "BTCUSD" is "BTC/USD"
        reason = f"reconcile: adopted orphan {broker_qty} {symbol} into {adopt_orphans_to}'s ledger"
        flat = LedgerPosition(adopt_orphans_to, symbol, Decimal(0), None, None)
        return [Action(ActionKind.ADOPT_ORPHAN, symbol, reason, adopt_orphans_to, qty=broker_qty,
                       evidence=evidence, position=flat)], False  # fmt: skip
    reason = f"orphan: broker holds {broker_qty} {symbol}, no ledger does"
    return [Action(ActionKind.REPORT_ORPHAN, symbol, reason, qty=broker_qty, evidence=evidence)], False
