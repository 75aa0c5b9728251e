"""G6: a blocked duplicate's skip record is in the audit log once the retry returns.

A bot process retries a decision (blocked as a duplicate), then dies by SIGKILL at once: no exit
handler runs. Its skip record must be there for whoever reads the log next. It need not be
durable against a power cut (the issue allows a lost skip note), but a killed process is the
ordinary way a bot ends, so a note held in the process's memory would be one G6 lost per crash.
Real SQLite file, real PostgreSQL, a real subprocess and its real gateway.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys

from tests.store_workers import REPO_ROOT, subprocess_env

BOT = """
import os, signal, sys
from tradeguard import OrderGateway, PaperBroker
broker = PaperBroker()
broker.set_price("TQQQ", "75.33")
gateway = OrderGateway(broker, sys.argv[1], agent_id="bot", reconcile_on_start=False)
first = gateway.enter("TQQQ", qty=6, intent="2026-05-21 09:42 breakout")
retry = gateway.enter("TQQQ", qty=6, intent="2026-05-21 09:42 breakout")
assert str(retry.outcome) == "duplicate", retry
os.kill(os.getpid(), signal.SIGKILL)  # the bot dies the moment its retry returns
"""


def test_a_bot_killed_right_after_a_blocked_retry_leaves_the_skip_in_the_audit_log(
    store_url: str,
) -> None:
    bot = subprocess.run(
        [sys.executable, "-c", BOT, store_url],
        cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bot.returncode == -signal.SIGKILL, bot.stderr
    # Read as an operator would, by the CLI in a process of its own.
    audit = subprocess.run(
        [sys.executable, "-m", "tradeguard.cli", "audit", "--store", store_url, "--action", "skip",
         "--format", "json"],
        cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    skips = json.loads(audit.stdout)
    assert [(r["action"], r["agent"], r["symbol"]) for r in skips] == [("skip", "bot", "TQQQ")]
    if store_url.startswith("sqlite:///"):  # and a reader that is not tradeguard sees it too
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as raw:
            (count,) = raw.execute("SELECT count(*) FROM tg_audit WHERE action = 'skip'").fetchone()
        assert count == 1
