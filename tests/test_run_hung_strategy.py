"""A second Ctrl-C stops a run whose strategy never comes back to the loop (audit 14b M3).

The first SIGINT asks the run to stop between bars; a strategy stuck inside `on_bar` (or a broker
call with no timeout) never gets there, and SIGINT, SIGTERM and another SIGINT all did nothing:
only SIGKILL ended it. The second signal now stops at once, exit status 130.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HANGER = """
import time
from tradeguard import Bars, Strategy, StrategyContext

class Hanger(Strategy):
    symbols = ("QQQ", "TQQQ")

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        print("stuck in on_bar", flush=True)
        while True:
            time.sleep(1)
"""


def test_a_second_sigint_stops_a_strategy_stuck_in_on_bar(tmp_path: Path) -> None:
    bot = tmp_path / "hanger.py"
    bot.write_text(HANGER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradeguard.cli", "run", str(bot), "--store", f"sqlite:///{tmp_path / 'c.db'}",
         "--view", "plain"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if "stuck in on_bar" in line:
            break
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # the first asks for a stop between bars: none comes
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
