"""A sim refuses a store where its agent has claims not yet final from an earlier run.

A sim's account starts empty, so an earlier run's UNKNOWN claim names an order on an account
that no longer exists. The sim used to start on such a store: when the strategy met the same
decision again, the fresh account's "no such order" was taken as evidence and the claim was
recorded NOT_SENT, although its order had been sent and filled (a fill lost from the record, G2).
It is refused as a store where the agent holds positions is: one line, exit status 2, the claim
left as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradeguard import ClaimState, ClaimStore
from tradeguard.cli import main

ROOT = Path(__file__).resolve().parents[1]
DAY = ROOT / "tradeguard" / "run" / "data" / "qqq-tqqq-sqqq-2026-05-21.csv"

BOT = '''
from tradeguard import Bars, Strategy, StrategyContext


class Late(Strategy):
    """Buys 3 TQQQ at 09:40 and does nothing else."""

    symbols = ("QQQ", "TQQQ")

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        if f"{bars.local:%H:%M}" == "09:40":
            ctx.gateway.enter("TQQQ", qty=3, intent=f"{bars.local:%Y-%m-%d %H:%M} late")
'''

# The order is placed but its answer is lost, and every lookup of it fails for the rest of the
# run (the account reads at the start, the first two order listings, still answer).
PLAN = {
    "seed": 1,
    "faults": [
        {"route": "POST /v2/orders", "nth": 1, "action": "accept_then_timeout"},
        {"route": "GET /v2/orders:by_client_order_id", "action": "error"},
        {"route": "GET /v2/orders", "nth": list(range(3, 500)), "action": "error"},
    ],
}


def test_a_second_sim_on_a_store_with_an_unknown_claim_is_refused_and_the_claim_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = tmp_path / "late.py"
    bot.write_text(BOT)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    bars = tmp_path / "morning.csv"
    bars.write_text("".join(DAY.read_text().splitlines(keepends=True)[: 1 + 3 * 20]))  # 09:30-09:49
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    common = ["run", str(bot), "--bars", str(bars), "--store", url, "--view", "plain"]

    assert main([*common, "--faults", str(plan)]) == 1  # ends with an order whose fate is unknown
    capsys.readouterr()
    with ClaimStore(url) as store:
        (claim,) = store.list_claims(agent_id="late")
    assert claim.state is ClaimState.UNKNOWN

    assert main(common) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tradeguard: error: sim needs a store of its own: agent late has 1 claim(s)")
    assert claim.client_order_id in lines[0]
    with ClaimStore(url) as store:
        (after,) = store.list_claims(agent_id="late")
    assert after.state is ClaimState.UNKNOWN and after.updated_at == claim.updated_at
