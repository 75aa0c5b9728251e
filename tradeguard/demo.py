"""`tradeguard demo`: the May 21 decisions replayed through the guard, offline, with faults injected.

The bot's decisions of that morning go through `OrderGateway` to the in-process paper broker.
The fault plan loses the answer to the first order (placed, never answered) and answers the
first TQQQ sell with a 504 after placing it (alpaca-py's hidden-retry path); the bot retries
every decision the way it did on May 21 (a timeout retry, a duplicate add, two exits 2 s apart);
and the SQQQ position is closed behind the bot's back before its exit (the phantom). The paper
account is kept in a file beside the store, so a second run shows every decision already
claimed: nothing is sent twice across restarts either.

It lives in the package, not in the repository's `strategies/` examples, so that an installed
`tradeguard demo` needs nothing but `tradeguard`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# Only the public surface (`tradeguard`, `tradeguard.testing`): the demo doubles as an example.
from tradeguard import ClaimStore, ManualClock, OrderGateway, OrderResult, Outcome, PaperBroker, Settings
from tradeguard.testing import FaultPlan, FaultyBroker, FixedPrices

__all__ = ["DEMO_PLAN", "STEPS", "DemoStep", "run_demo"]

DEMO_PLAN = """
seed: 21
faults:
  - {route: POST /v2/orders, nth: 1, action: accept_then_timeout, delay_secs: 10}
  - route: POST /v2/orders
    match: {symbol: TQQQ, side: sell}
    nth: 1
    action: accept_then_error
    status: 504
"""


@dataclass(frozen=True, slots=True)
class DemoStep:
    """One call the bot makes: at `time` (US/Eastern, May 21), `action` `symbol` for `intent`."""

    time: str
    action: str  # "enter", "exit", or "close-outside" (the broker position vanishes)
    symbol: str
    qty: int | None
    intent: str
    note: str = ""


STEPS = (
    DemoStep("09:42:00", "enter", "TQQQ", 6, "09:42 buy", "answer lost"),
    DemoStep("09:42:05", "enter", "TQQQ", 6, "09:42 buy", "timeout retry"),
    DemoStep("09:47:00", "enter", "TQQQ", 6, "09:47 add"),
    DemoStep("09:47:03", "enter", "TQQQ", 6, "09:47 add", "duplicate add"),
    DemoStep("09:49:00", "exit", "TQQQ", None, "09:49 flip", "504 after accept"),
    DemoStep("09:49:02", "exit", "TQQQ", None, "09:49 flip", "duplicate sell on flip"),
    DemoStep("09:49:04", "enter", "SQQQ", 2, "09:49 flip"),
    DemoStep("11:06:00", "enter", "SQQQ", 2, "11:06 add"),
    DemoStep("11:06:02", "enter", "SQQQ", 2, "11:06 add", "duplicate add during scale-in"),
    DemoStep("11:20:00", "enter", "TQQQ", 12, "11:20 entry"),
    DemoStep("11:26:26", "exit", "TQQQ", 12, "11:26 exit", "first exit"),
    DemoStep("11:26:28", "exit", "TQQQ", 12, "11:26 exit", "second exit 2 s later"),
    DemoStep("11:40:00", "close-outside", "SQQQ", None, "", "SQQQ closed outside the bot"),
    DemoStep("11:41:00", "exit", "SQQQ", None, "11:41 exit", "the broker holds none"),
    DemoStep("11:42:00", "enter", "SQQQ", 2, "11:42 entry", "no 3-hour ENTRY BLOCKED"),
)


def _paper_state_path(store: ClaimStore) -> Path | None:
    if store.backend != "sqlite" or not store.url.database:
        return None
    return Path(store.url.database).with_suffix(".paper.json")


def _at(hhmmss: str) -> datetime:
    hour, minute, second = (int(x) for x in hhmmss.split(":"))
    return datetime(2026, 5, 21, hour + 4, minute, second, tzinfo=UTC)  # EDT is UTC-4


def _call(gateway: OrderGateway, step: DemoStep) -> OrderResult:
    """Act like the May 21 bot: an UNKNOWN answer is retried with the same intent."""
    for _ in range(3):
        if step.action == "enter":
            result = gateway.enter(step.symbol, qty=step.qty, intent=step.intent)
        else:
            result = gateway.exit(step.symbol, qty=step.qty, intent=step.intent)
        if result.outcome is not Outcome.UNKNOWN:
            break
    return result


def run_demo(*, store_url: str, agent_id: str = "demo-bot") -> int:
    """Run the demo against `store_url`; print what happened; return 0."""
    clock = ManualClock(_at("09:30:00"))
    settings = Settings(recent_activity_secs=0)
    store = ClaimStore(store_url, settings=settings, clock=clock)
    state = _paper_state_path(store)
    paper = PaperBroker(prices=FixedPrices({"TQQQ": "75.33", "SQQQ": "21.50"}), clock=clock, state_path=state)
    broker = FaultyBroker(paper, FaultPlan.parse(DEMO_PLAN, source="demo plan"), clock=clock)
    gateway = OrderGateway(broker, store, agent_id=agent_id, settings=settings, clock=clock)
    results: list[OrderResult] = []
    print(f"tradeguard demo: agent {agent_id!r}, {store!r}, paper account {state or 'in memory'}\n")
    for step in STEPS:
        clock.set(max(clock.now(), _at(step.time)))
        if step.action == "close-outside":
            paper.close_position(step.symbol)
            print(f"{step.time}  [{step.note}]")
            continue
        result = _call(gateway, step)
        results.append(result)
        order = result.order
        sent = (
            f"{order.side} {order.filled_qty or order.qty} {order.symbol} ({order.status})" if order else "-"
        )
        print(
            f"{step.time}  {step.action:<5} {step.symbol:<4} {step.intent!r:<14} {result.outcome:<9} "
            f"order: {sent:<26} {step.note}"
        )
    placed = sum(r.outcome is Outcome.SUBMITTED for r in results)
    held_back = sum(r.outcome in (Outcome.DUPLICATE, Outcome.SKIPPED) for r in results)
    print(
        f"\n{len(results)} calls: {placed} placed an order, {held_back} were answered without sending "
        "(retries of a known decision, and an exit with nothing to sell)"
    )
    # The bot's end-of-day pass: it settles whatever the day left between guard and broker (on a
    # second run, the outside close of the replayed session is a phantom for the guard to clear).
    clock.set(max(clock.now(), _at("16:00:00")))
    closing = gateway.reconcile()
    print(f"16:00:00  end-of-day reconcile: {len(closing.changes)} change(s)")
    for symbol in ("TQQQ", "SQQQ"):
        at_broker = paper.get_position(symbol)
        print(
            f"{symbol}: the guard says {gateway.position(symbol).qty}, the broker holds "
            f"{at_broker.qty if at_broker else 0}"
        )
    print(f"{store.audit_count()} audit records: tradeguard audit --store {store_url}")
    if placed == 0:
        print("(a second run: every decision was already claimed, so nothing was sent)")
    store.close()
    _compare_may21()
    return 0


def _compare_may21() -> None:
    """End with the May 21 session replayed without a guard, with the entry guard and with tradeguard."""
    from replay.demo import may21_comparison  # noqa: PLC0415 - the replay package ships beside tradeguard

    print()
    for line in may21_comparison():
        print(line)
