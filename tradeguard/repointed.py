"""An agent re-pointed to another broker account: no entry here joins a turn of the old one.

The ledger holds one open turn per agent and symbol. An agent moved to another account (same
agent id, same store) with a turn still open keeps that turn's shares on the old account; an
entry on the new one would add this account's fills to the same turn, and then neither
account's read could ever settle it (each holds only part of it, and a pass leaves a turn
holding another account's fills out of every correction): the view would never converge (G4;
audit 66). So such an entry is refused, nothing claimed or sent, with a reason that says what
to do, until the old turn is closed: sold through the guard on the old account, or cleared by
that account's own pass once it is flat there. So are entries while orders made on the old
account are still in motion in the symbol (they would fill into the turn this entry opens), and
a drop-in's adoption of this account's shares into such a turn.

The check costs nothing on the order path otherwise: the symbols at stake are read once per
account this gateway registers (at its start, and when its key changes), and only an entry in
one of them reads the store again.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from tradeguard.domain import Claim, LedgerPosition, ledger_symbol, symbol_key
from tradeguard.domain.intents import Intent
from tradeguard.domain.lifecycle import ACTIVE_STATES
from tradeguard.execution import OrderResult, Outcome
from tradeguard.ports import ClaimLedger, coid_scope

__all__ = ["RepointedTurns"]

logger = logging.getLogger("tradeguard.gateway")

# A claim of a turn was updated when it joined the turn (its fill, or its claim while the turn
# was open), so no earlier than the turn opened; the margin covers stamps of equal instants.
_TURN_MARGIN = timedelta(seconds=1)
_ACTIVE = sorted(ACTIVE_STATES)


class RepointedTurns:
    """Mixin of `OrderGateway`: entries refused beside the agent's turn on another account."""

    store: ClaimLedger
    agent_id: str
    _account_key: str | None
    # Symbols (`symbol_key`) where this agent's open turn or orders in motion were made on
    # another account, as of the last registration; an entry there is checked again live.
    _held_elsewhere: set[str]

    def _note_held_elsewhere(self) -> None:
        """Read which symbols hold this agent's turns or orders in motion made on another account."""
        scope = coid_scope(self._account_key)
        if not scope:  # an account not known by its id: claims of other accounts cannot be told apart
            self._held_elsewhere = set()
            return
        found = {symbol_key(c.symbol) for c in self._in_motion_elsewhere(scope)}
        for pos in self.store.positions(self.agent_id):
            if symbol_key(pos.symbol) not in found and self._filled_elsewhere(pos, scope):
                found.add(symbol_key(pos.symbol))
        self._held_elsewhere = found

    def _entry_beside_elsewhere(self, intent: Intent) -> OrderResult | None:
        """Refuse a new entry while the agent's turn in its symbol holds another account's fills.

        None: go on (no such turn or order; or a known decision, answered as one). A refusal
        claims nothing and is audited as a skip; the same decision may be retried once the old
        account's turn is settled.
        """
        key = symbol_key(intent.symbol)
        if key not in self._held_elsewhere or self.store.get(intent.key) is not None:
            return None
        scope = coid_scope(self._account_key)
        symbol = ledger_symbol(intent.symbol)
        made = [c for c in self._in_motion_elsewhere(scope) if symbol_key(c.symbol) == key]
        held = self.store.position(self.agent_id, symbol)
        if not held.is_flat:
            made += self._filled_elsewhere(held, scope)
        if not made:
            self._held_elsewhere.discard(key)  # settled since: entries here are free again
            return None
        reason = (
            f"entry {intent.name!r} not sent: {self.agent_id}'s {symbol} "
            + (f"turn holds {held.qty} " if not held.is_flat else "orders are ")
            + f"made on another broker account ({_accounts(made)}: {_names(made)}), and one turn must "
            f"never hold two accounts' shares (neither account's read could settle it). Exit or "
            f"settle it on that account first (its reconcile pass clears it once that account is "
            f"flat); this decision may then be retried"
        )
        logger.warning("%s: %s", self.agent_id, reason)
        self.store.record_skip(None, agent_id=self.agent_id, reason=reason, symbol=symbol, kind="entry")
        return OrderResult(Outcome.NOT_SENT, None, None, reason)

    def _adoption_beside_elsewhere(self, symbol: str) -> bool:
        """Whether the agent's open turn in `symbol` holds another account's fills (no adoption here)."""
        if symbol_key(symbol) not in self._held_elsewhere:
            return False
        held = self.store.position(self.agent_id, symbol)
        return not held.is_flat and bool(self._filled_elsewhere(held, coid_scope(self._account_key)))

    def _in_motion_elsewhere(self, scope: str) -> list[Claim]:
        """The agent's claims in motion made on another account than `scope`'s."""
        return [
            c
            for c in self.store.list_claims(states=_ACTIVE, agent_id=self.agent_id)
            if c.on_other_account(scope)
        ]

    def _filled_elsewhere(self, held: LedgerPosition, scope: str) -> list[Claim]:
        """The claims of the open turn `held` that filled on another account than `scope`'s."""
        since = None if held.opened_at is None else held.opened_at - _TURN_MARGIN
        return [
            c
            for c in self.store.list_claims(agent_id=self.agent_id, symbol=held.symbol, updated_since=since)
            if c.turn_id == held.turn_id and c.filled_qty and c.on_other_account(scope)
        ]


def _accounts(claims: list[Claim]) -> str:
    return ", ".join(sorted({c.coid_scope or "" for c in claims}))


def _names(claims: list[Claim]) -> str:
    return ", ".join(c.client_order_id for c in claims[:3]) + (", ..." if len(claims) > 3 else "")
