"""Alembic environment: runs migrations on the connection `open_engine` hands over."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - tradeguard always passes its own connection
    raise RuntimeError("tradeguard migrations run through tradeguard.ClaimStore, not the alembic CLI")
context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
