"""Importers: real bots' logs, Alpaca order histories and claim-store exports as sessions.

Each reads its source, keeps every line it cannot place as a note (never dropped), and writes a
session that `tradeguard replay` runs; a malformed source raises `SessionFormatError` naming the
line.
"""

from replay.importers.alpaca_orders import import_alpaca_orders
from replay.importers.bot_log import import_bot_log
from replay.importers.claims import import_claims
from replay.importers.common import ImportReport

IMPORTERS = {"alpaca-orders": import_alpaca_orders, "bot-log": import_bot_log, "claims": import_claims}
"""The kinds `tradeguard import KIND` knows, and the function of each."""

__all__ = ["IMPORTERS", "ImportReport", "import_alpaca_orders", "import_bot_log", "import_claims"]
