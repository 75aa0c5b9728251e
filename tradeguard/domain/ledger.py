"""The ledger's unit: what one agent holds in one symbol, as one turn (flat -> position -> flat).

Also the ledger's rules as pure functions (`fill_step`, `size_exit`), so the SQL store and the
in-memory store apply one set of rules and differ only in how they read and write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from tradeguard.domain.frozen import fast_frozen_init

__all__ = [
    "ExitRoom",
    "FillStep",
    "acknowledged_before",
    "legs_wait",
    "made_here",
    "LedgerPosition",
    "SizingRead",
    "fill_step",
    "adoption_note",
    "orphan",
    "own_moves_hide_the_orphan",
    "size_exit",
]


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LedgerPosition:
    """The guard's view of one agent's holding in one symbol. `qty` is signed (short < 0)."""

    agent_id: str
    symbol: str
    qty: Decimal
    turn_id: int | None
    opened_at: datetime | None
    updated_at: datetime | None = None  # the turn's last fill or correction

    @property
    def is_flat(self) -> bool:
        """True when nothing is held."""
        return self.qty == 0


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ExitRoom:
    """How much one agent's exit may ask for now, and why (read under the symbol's lock).

    Attributes:
        held: The agent's signed ledger quantity.
        open_exits: The unfilled quantity of the agent's exits that may still fill (any active
            state): the ledger cannot back them twice.
        unacknowledged_exits: The part of `open_exits` the broker may not show yet (PENDING,
            UNKNOWN): its `qty_available` still counts those shares.
        reserved_by_others: Shares on the same side that other agents' ledgers hold and have not
            yet put into an acknowledged exit: never this agent's to sell.
        broker_available: The broker's `qty_available` on the agent's side (0 when the broker is
            flat or on the other side).
        qty: What the exit may send: min(requested or held, held - open exits, broker available
            - unacknowledged exits - reserved by others); zero or less means nothing.
    """

    held: Decimal
    open_exits: Decimal
    unacknowledged_exits: Decimal
    reserved_by_others: Decimal
    broker_available: Decimal
    qty: Decimal

    def describe(self, symbol: str) -> str:
        """Return a sentence for logs and audit records."""
        return (
            f"ledger holds {self.held} {symbol} with {self.open_exits} in open exits; broker has "
            f"{self.broker_available} available, {self.unacknowledged_exits} in unacknowledged exits, "
            f"{self.reserved_by_others} held by other agents"
        )


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class FillStep:
    """What one signed fill does to an agent's open turn; every store applies it the same way.

    Attributes:
        set_qty: The open turn's new quantity (None: left as is, or there is no open turn).
        close_reason: Close the open turn (at `set_qty`, zero) with this reason; None keeps it open.
        open_qty: Open a new turn holding this quantity (None: no new turn).
        open_reason: The new turn's reason.
    """

    set_qty: Decimal | None = None
    close_reason: str | None = None
    open_qty: Decimal | None = None
    open_reason: str = ""


_NO_STEP = FillStep()


def fill_step(held: Decimal | None, delta: Decimal, reason: str) -> FillStep:
    """Return how a signed fill of `delta` changes an open turn holding `held` (None: flat, no turn).

    A fill from flat opens a turn; one that brings the turn to zero closes it; one that crosses
    zero closes the turn flat and opens a new one with the remainder on the other side.
    """
    if delta == 0:
        return _NO_STEP
    if held is None:
        return FillStep(open_qty=delta, open_reason=reason)
    new_qty = held + delta
    if new_qty == 0:
        return FillStep(set_qty=Decimal(0), close_reason=f"flat after {reason}")
    if (new_qty > 0) != (held > 0):
        return FillStep(
            set_qty=Decimal(0),
            close_reason=f"crossed zero on {reason}",
            open_qty=new_qty,
            open_reason=f"remainder of {reason}",
        )
    return FillStep(set_qty=new_qty)


def acknowledged_before(acknowledged: bool, moved_at: datetime, read_at: datetime | None) -> bool:
    """Whether an exit's shares are out of a broker `qty_available` read at `read_at` (audit 14c D1).

    An acknowledged exit (SUBMITTED, PARTIALLY_FILLED) whose claim last moved no later than the
    read. One that moved after it may have been acknowledged after the read, which then still
    counts its shares as available: it counts as unacknowledged (its shares are subtracted again,
    so the exit is sized smaller, never larger). `read_at` None: the read's time is not known.
    Times on one host's clock; across hosts, clock skew shifts the line (as it does the dedup
    window's, see docs/architecture.md).
    """
    return acknowledged and (read_at is None or moved_at <= read_at)


def legs_wait(parent: tuple[object, object] | None) -> bool:
    """Whether a group of exit legs waits for its entry: its parent (kind, state) an entry not filled.

    The legs of a bracket or OTO entry are acknowledged exit claims from the moment the entry is
    accepted, but Alpaca holds nothing for them until the entry fills (they are `held`), and the
    shares they will sell are not held yet: sizing leaves them out of the exits in flight (audit
    33: credited as out of `qty_available`, another agent's shares were sold; counted against the
    agent's own holding, half a real position could not be sold). An OCO's legs name an exit.
    """
    if parent is None:
        return False
    kind, state = (str(getattr(v, "value", v)) for v in parent)
    return kind == "entry" and state != "FILLED"


class SizingRead(NamedTuple):
    """What a positions read offers an agent's exit, and what of it is not the agent's.

    Attributes:
        on_side: The broker holds the symbol on the side of the agent's ledger.
        available: The broker's `qty_available` there (0 when not `on_side`).
        held_back: What of `available` is not the agent's to sell (other agents' unbooked
            fills, sales the read may not show yet, holds it does not show); it may exceed
            `available` when the read trails.
        note: What was held back and why ("" when nothing was).
        unbooked_shows_at: When other agents' unbooked fills held back surely show in a
            positions read, if this read may still trail them (else None): held back from a
            read that does not show them yet, they are taken twice.
    """

    on_side: bool
    available: Decimal
    held_back: Decimal
    note: str
    unbooked_shows_at: datetime | None


def size_exit(
    agent_id: str,
    holders: Mapping[str, Decimal],
    open_exits: Iterable[tuple[str, bool, Decimal, str]],
    *,
    broker_available: Decimal,
    requested: Decimal | None,
) -> ExitRoom:
    """Size one agent's exit from every agent's holding and every open exit in the symbol (G3).

    Args:
        agent_id: The agent exiting.
        holders: Each agent's signed open-turn quantity in the symbol.
        open_exits: ``(agent_id, acknowledged, unfilled qty, group)`` of every exit claim in
            the symbol in an active state; acknowledged means SUBMITTED or PARTIALLY_FILLED
            (the broker has taken its shares out of `qty_available`), not PENDING or UNKNOWN.
            `group` names the orders that are alternatives to each other (`intents.exit_group`:
            a bracket's legs, an OCO's two orders): only one of them fills, and the broker holds
            their shares once, so a group counts once, at its largest unfilled quantity, and as
            acknowledged only when all of its claims are.
        broker_available: The broker's `qty_available` on the agent's side, read just before.
        requested: The quantity asked for; None for the whole holding.

    The caller reads `holders` and `open_exits` under the symbol's lock, so two exits are never
    sized from the same shares.
    """
    held = holders.get(agent_id, Decimal(0))
    # Other agents' shares on this agent's side of the account (their shorts are not for sale).
    others = sum(
        (abs(q) for a, q in holders.items() if a != agent_id and held != 0 and (q > 0) == (held > 0)),
        Decimal(0),
    )
    open_qty = unacknowledged = others_acknowledged = Decimal(0)
    for holder, acknowledged, left in _once_per_group(open_exits):
        if holder == agent_id:
            open_qty += left
            if not acknowledged:
                unacknowledged += left
        elif acknowledged:
            # Acknowledged exits of other agents are out of qty_available already.
            others_acknowledged += left
    reserved = max(others - others_acknowledged, Decimal(0))
    wanted = abs(held) if requested is None else requested
    qty = min(wanted, abs(held) - open_qty, broker_available - unacknowledged - reserved)
    return ExitRoom(held, open_qty, unacknowledged, reserved, broker_available, qty)


def _once_per_group(
    open_exits: Iterable[tuple[str, bool, Decimal, str]],
) -> Iterable[tuple[str, bool, Decimal]]:
    """Merge each group's exits into one: its largest unfilled qty, acknowledged if all are."""
    groups: dict[tuple[str, str], tuple[bool, Decimal]] = {}
    for holder, acknowledged, left, group in open_exits:
        seen = groups.get((holder, group))
        groups[holder, group] = (
            (acknowledged, left) if seen is None else (acknowledged and seen[0], max(left, seen[1]))
        )
    return ((holder, acknowledged, left) for (holder, _), (acknowledged, left) in groups.items())


def own_moves_hide_the_orphan(
    broker_qty: Decimal, in_motion: Iterable[str], filled_lately: Iterable[tuple[str, Decimal]]
) -> bool:
    """Whether the agent's own orders make `broker_qty` minus the ledgers untrustworthy.

    The positions endpoint trails fills (ALPACA.md), so a read shows the position as it was up to
    `position_settle_secs` ago, while the ledger books fills as the orders endpoint shows them.
    Taking the read minus the ledgers as an orphan overstates it (the agent would adopt and sell
    shares that are not there, or are another's) in exactly two cases: one of the agent's own
    orders on the side that *adds* to the broker's position may have filled into the read before
    its ledger books it (an order in motion on that side), or a fill on the side that *reduces*
    it is booked but may not show in the read yet (such a fill within the settle horizon). Every
    other own move only understates the orphan: fills that add and are booked but not yet in the
    read, fills that reduce and are in the read but not yet booked. So a bot's own buy just
    filled never holds back adopting shares bought outside it; its own sell just filled does.

    Args:
        broker_qty: The broker's signed position.
        in_motion: The sides ("buy"/"sell") of the agent's orders in motion in the symbol.
        filled_lately: (side, filled qty) of the agent's claims in the symbol updated within
            `position_settle_secs`.
    """
    adds = "buy" if broker_qty > 0 else "sell"
    return any(side == adds for side in in_motion) or any(
        side != adds and filled != 0 for side, filled in filled_lately
    )


def orphan(broker_qty: Decimal, others: Decimal, mine: Decimal, *, top_up: bool) -> Decimal:
    """The shares of `broker_qty` no ledger on the account holds, that `mine` may adopt (0: none).

    A flat ledger adopts what the other agents' ledgers leave; a ledger holding on the broker's
    side adopts what is left beyond every ledger too, but only when asked (`top_up`); a ledger
    on the other side never adopts.
    """
    if mine != 0 and (not top_up or (mine > 0) != (broker_qty > 0)):
        return Decimal(0)
    left = broker_qty - others - mine
    return left if left != 0 and (left > 0) == (broker_qty > 0) else Decimal(0)


def adoption_note(
    why: str, symbol: str, adopted: Decimal, *, broker_qty: Decimal, others: Decimal, mine: Decimal
) -> tuple[str, dict[str, str]]:
    """The audit reason and detail of an adoption of `adopted` shares (both stores write these)."""
    detail = {
        "action": "adopt_broker_position",
        "broker_qty": str(broker_qty),
        "other_agents_qty": str(others),
    }
    if mine == 0:
        return f"{why}: adopted {adopted} {symbol} held at the broker before tradeguard saw it", detail
    reason = (
        f"{why}: adopted {adopted} {symbol} the broker holds beyond every ledger on the account "
        f"(bought or sold outside the guard), on top of the {mine} held"
    )
    return reason, detail | {"ledger_qty": str(mine)}


def made_here(scopes: set[str], here: str) -> bool:
    """Whether a turn whose claims carry `scopes` (their `coid_scope`s, "" unknown) may be on `here`.

    A turn counts where its claims were made; one its claims cannot place (none known, or one
    of unknown account) counts wherever its agent is registered (audit 66). The rule of both
    stores' exit sizing (`store.ledger._holds_here`, `MemoryLedger._holds_on_account_of`).
    """
    known = scopes - {""}
    return not known or "" in scopes or here in known
