"""Book crypto pairs spelt without their slash under the one spelling the guard now keys by.

Before this revision a bot's "BTCUSD" and "BTC/USD" were two symbols to the ledger; now both are
"BTC/USD" (`tradeguard.domain.orders.ledger_symbol`), and the store compares symbols as stored.
Turns and claims written as "BTCUSD" would then be invisible to the new spelling: another agent's
coins would read as an orphan and be adopted and sold (G3). This revision rewrites the symbol of
such turns and claims. Claim keys and client_order_ids are left as they are (the orders at the
broker carry them); the audit log is append-only and keeps what was written then (G6).

An agent with an open turn under both spellings cannot be merged by a rule (which fills came
first is not recorded across turns): the upgrade is refused, naming them, until an operator
settles one of the two (`tradeguard settle`).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# The rule as it was when this revision was written: a later change of `ledger_symbol` must not
# change what an old upgrade did, so the package's function is not imported here.
_QUOTES = ("USDT", "USDC", "USD", "BTC")

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _slash_form(symbol: str) -> str | None:
    """Return the slash form of a pair spelt without it ("BTCUSD" -> "BTC/USD"), else None."""
    text = symbol.strip().upper()
    if "/" in text or len(text) < 6 or not text.isalnum():
        return None
    for quote in _QUOTES:
        base = text[: -len(quote)]
        if text.endswith(quote) and len(base) >= 3 and not base.isdigit():
            return f"{base}/{quote}"
    return None


def upgrade() -> None:
    """Rewrite slashless pair symbols of turns and claims; refuse a clash of open turns."""
    conn = op.get_bind()
    stored = conn.execute(sa.text("SELECT symbol FROM tg_turns UNION SELECT symbol FROM tg_claims")).scalars()
    renames = {old: new for old in stored if (new := _slash_form(old)) is not None}
    for old, new in sorted(renames.items()):
        clash = (
            conn.execute(
                sa.text(
                    "SELECT a.agent_id FROM tg_turns a JOIN tg_turns b ON a.agent_id = b.agent_id"
                    " WHERE a.symbol = :old AND b.symbol = :new AND a.is_open = 1 AND b.is_open = 1"
                ),
                {"old": old, "new": new},
            )
            .scalars()
            .all()
        )
        if clash:
            raise RuntimeError(
                f"cannot book {old} as {new}: {', '.join(sorted(clash))} hold open turns under both "
                "spellings; settle one of them (tradeguard settle) with the tradeguard you have, "
                "then upgrade"
            )
        names = {"old": old, "new": new}
        conn.execute(sa.text("UPDATE tg_turns SET symbol = :new WHERE symbol = :old"), names)
        conn.execute(sa.text("UPDATE tg_claims SET symbol = :new WHERE symbol = :old"), names)


def downgrade() -> None:
    """Nothing to undo: the slash form is what the older code reads as another symbol, not wrong data."""
