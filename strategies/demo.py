"""`tradeguard demo`: the momentum bot trading through the guard, offline, with faults injected.

A scripted QQQ morning drives the bot on the in-process paper broker. The fault plan loses the
response to the first order (placed, never answered), answers the first TQQQ sell with a 504
after placing it (alpaca-py's hidden-retry path), and a position is closed behind the bot's back
so its exit is refused (the May 21 phantom). The bot retries every unknown outcome with the same
intent, as a real bot would. The paper account lives in a file beside the store, so running the
demo twice shows the second run sending nothing: every decision is already claimed.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from strategies.momentum import MomentumBot
from tradeguard import (
    AuditQuery,
    ClaimStore,
    ManualClock,
    OrderGateway,
    OrderResult,
    PaperBroker,
    Settings,
)
from tradeguard.broker.faults import FaultPlan
from tradeguard.broker.paper_prices import FixedPrices
from tradeguard.store.engine import parse_url
from tradeguard.testing import FaultyBroker

__all__ = ["DEMO_PLAN", "run_demo"]

DEMO_PLAN = """
seed: 21
faults:
  - route: POST /v2/orders
    nth: 1
    action: accept_then_timeout
    delay_secs: 10
  - route: POST /v2/orders
    match: {symbol: TQQQ, side: sell}
    nth: 1
    action: accept_then_error
    status: 504
"""

# QQQ closes of a scripted morning (1-minute bars from 09:40 US/Eastern = 13:40 UTC).
_QQQ = [530.0, 530.4, 530.9, 531.3, 531.8, 532.2, 532.1, 531.6, 531.0, 530.4, 530.3, 530.5, 530.1, 529.6,
        529.0, 528.7, 528.9, 529.4, 529.8, 530.3, 530.2]


def _paper_state_path(store_url: str) -> Path | None:
    url = parse_url(store_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database).with_suffix(".paper.json")


def run_demo(*, store_url: str, agent_id: str = "demo-bot") -> int:
    """Run the demo against `store_url`; print what happened; return 0."""
    clock = ManualClock(datetime(2026, 5, 21, 13, 40, tzinfo=UTC))
    settings = Settings(recent_activity_secs=0, unknown_grace_secs=15)
    state = _paper_state_path(store_url)
    paper = PaperBroker(prices=FixedPrices({"TQQQ": "75.33", "SQQQ": "21.50"}), clock=clock, state_path=state)
    broker = FaultyBroker(paper, FaultPlan.parse(DEMO_PLAN, source="demo plan"), clock=clock)
    store = ClaimStore(store_url, settings=settings, clock=clock)
    gateway = OrderGateway(broker, store, agent_id=agent_id, settings=settings, clock=clock)
    bot = MomentumBot(gateway)
    orders_before = len(paper.orders())
    print(f"tradeguard demo: agent {agent_id!r}, store {store!r}, paper account {state or 'in memory'}")
    results: list[OrderResult] = []
    for minute, close in enumerate(_QQQ):
        bar = clock.now()
        if minute == 15 and not gateway.store.position(agent_id, "SQQQ").is_flat:
            paper.close_position("SQQQ")  # closed outside the bot: its next SQQQ exit finds nothing
            print(f"{bar:%H:%M} [outside the bot] SQQQ position closed at the broker")
        for result in bot.on_bar(bar, Decimal(str(close))):
            results.append(result)
            claim = result.claim
            what = f"{claim.kind} {claim.side} {claim.symbol} {claim.order_qty or ''}" if claim else "exit"
            print(f"{bar:%H:%M} {what:<22} -> {result.outcome:<9} {result.reason}")
        clock.advance(timedelta(minutes=1).total_seconds())
    gateway.reconcile()
    outcomes = Counter(r.outcome.value for r in results)
    sent = len(paper.orders()) - orders_before
    print()
    print(f"decisions acted on: {len(results)}; orders placed at the broker: {sent}; outcomes: {dict(outcomes)}")
    print(f"duplicates blocked (audit 'skip' records): {store.audit_count(AuditQuery(actions=('skip',), agent_id=agent_id))}")
    for symbol in ("TQQQ", "SQQQ"):
        held = gateway.position(symbol).qty
        at_broker = paper.get_position(symbol)
        print(f"{symbol}: guard says {held}, broker holds {at_broker.qty if at_broker else 0}")
    print(f"audit records: {store.audit_count()} (tradeguard audit --store {store_url} to read them)")
    store.close()
    return 0
