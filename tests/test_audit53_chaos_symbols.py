"""`tradeguard chaos` on a bot whose symbols the day has no bars of is refused before any run.

`tradeguard run` names the missing symbols in one line (exit 2). `chaos` used to start the
campaign anyway: every bar of every run raised in the strategy (no such symbol), each run was
restarted bar after bar, and a real-process run waited out a restart per bar, so a campaign of
two runs on a new user's bot still had not ended after minutes and never said why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tradeguard import ConfigError
from tradeguard.cli import main
from tradeguard.testing import chaos

SPY_BOT = '''
from tradeguard import Bars, Strategy, StrategyContext


class SpyDip(Strategy):
    """Buys TQQQ when SPY dips: the shipped day has no SPY."""

    symbols = ("SPY", "TQQQ")

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        if bars.close("SPY") < 0:
            ctx.gateway.enter("TQQQ", qty=1, intent=f"{bars.local:%H:%M} dip")
'''


@pytest.fixture
def spy_bot(tmp_path: Path) -> Path:
    path = tmp_path / "spybot.py"
    path.write_text(SPY_BOT)
    return path


def test_the_command_names_the_missing_symbol_in_one_line_before_any_run(
    spy_bot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "sessions"
    args = ["chaos", str(spy_bot), "--runs", "2", "--kill-every", "0", "--minutes", "5", "--save", str(save)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tradeguard: error: ")
    assert "no SPY bars" in lines[0]
    assert not save.exists()


def test_the_library_call_raises_config_error_naming_the_symbol(spy_bot: Path) -> None:
    with pytest.raises(ConfigError, match="no SPY bars"):
        chaos(str(spy_bot), runs=1, seed=1, kill_every=0)
