"""`tradeguard run` whose output goes away mid-run (`| head`, a full disk): it stops, finishes, says so.

Before, the plain view's `BrokenPipeError` was taken for the strategy's error (its traceback on
stderr) and the next write skipped `on_stop`, the last lookups and the closing reconcile pass;
the live view's Rich console exited the process from inside a write (`SystemExit(1)`) in the
middle of the day. Now the run stops at the end of the bar, does everything a stop does, and
the command ends quietly with 141.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tradeguard import ClaimState, ClaimStore
from tradeguard.cli import main
from tradeguard.run.command import prepare
from tradeguard.run.settings import RunSettings, ViewKind

ROOT = Path(__file__).resolve().parents[1]

BOT = """
from pathlib import Path

from tradeguard import Strategy


class Marks(Strategy):
    symbols = ("QQQ", "TQQQ")

    def on_bar(self, bars, ctx):
        if bars.local.minute % 10 == 1 and ctx.gateway.position("TQQQ").is_flat:
            ctx.gateway.enter("TQQQ", qty=6, intent=f"{bars.local:%H:%M} entry")
        elif bars.local.minute % 10 == 6 and not ctx.gateway.position("TQQQ").is_flat:
            ctx.gateway.exit("TQQQ", intent=f"{bars.local:%H:%M} exit")

    def on_stop(self, ctx):
        Path(__file__).with_suffix(".stopped").write_text("on_stop ran")
"""


class ClosedAfter(io.StringIO):
    """An output whose reader goes away after `writes` writes."""

    def __init__(self, writes: int) -> None:
        super().__init__()
        self.left = writes

    def write(self, text: str) -> int:
        if self.left <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.left -= 1
        return super().write(text)

    def isatty(self) -> bool:
        return False


@pytest.fixture
def bot(tmp_path: Path) -> Path:
    path = tmp_path / "marks.py"
    path.write_text(BOT)
    return path


def assert_finished(bot: Path, url: str) -> None:
    """on_stop ran and every claim is definite: the stop's work was done, not cut off."""
    assert bot.with_suffix(".stopped").read_text() == "on_stop ran"
    with ClaimStore(url) as store:
        claims = store.list_claims(agent_id="marks")
        assert claims and all(c.state is ClaimState.FILLED for c in claims)
        last = max(c.updated_at for c in claims)
    assert last.hour < 19  # stopped in the morning (ET), not run to the close


@pytest.mark.parametrize(("view", "writes"), [(ViewKind.PLAIN, 12), (ViewKind.LIVE, 40)])
def test_a_closed_output_stops_the_run_after_its_closing_work_and_raises_the_closed_pipe(
    view: ViewKind,
    writes: int,
    bot: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The live view redraws at most every 0.25 s of wall time: on a quiet machine the whole day
    # ran between two redraws and the pipe closed only at the close. Redrawn after every bar,
    # it writes as the plain view does: by bars, not by the machine's speed.
    from tradeguard.run.view import LiveView

    _refresh, monotonic = LiveView.__init__.__defaults__  # type: ignore[misc]
    monkeypatch.setattr(LiveView.__init__, "__defaults__", (0.0, monotonic))
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    settings = RunSettings(strategy=str(bot), store_url=url, view=view)
    prepared = prepare(settings, environ={}, out=ClosedAfter(writes))
    with pytest.raises(BrokenPipeError):
        prepared.run()
    assert_finished(bot, url)
    assert "Traceback" not in capsys.readouterr().err  # not reported as the strategy's error


def test_the_command_ends_quietly_with_141(
    bot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    monkeypatch.setattr("sys.stdout", ClosedAfter(writes=12))
    assert main(["run", str(bot), "--store", url, "--view", "plain"]) == 141
    assert capsys.readouterr().err == ""
    assert_finished(bot, url)
