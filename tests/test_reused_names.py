"""A decision name reused a day later is still one decision (G1), and the guard says so loudly.

Audit 10d D4: a bot whose intent names are bar times without a date ("09:31 breakout"), or
whose client_order_ids are fixed ("TQQQ-0931-entry"), meets yesterday's claim today. The key is
the decision, so nothing is sent twice; but the answer was silent, and the bot took yesterday's
filled order for today's. Now a retry of a decision first claimed more than 12 hours before
logs a warning and says so in its answer and its audit record.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tradeguard import ManualClock, OrderGateway, PaperBroker
from tradeguard.domain import AuditAction
from tradeguard.execution import Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import AuditQuery, ClaimStore


def test_a_name_reused_the_next_day_is_answered_from_yesterday_with_a_warning(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(datetime(2026, 5, 20, 13, 31, tzinfo=UTC))
    broker = PaperBroker(prices=FixedPrices({"TQQQ": "75"}), clock=clock)
    with ClaimStore(store_url, clock=clock) as store:
        gateway = OrderGateway(broker, store, agent_id="bot", clock=clock)
        assert gateway.enter("TQQQ", qty=10, intent="09:31 breakout").outcome is Outcome.SUBMITTED
        clock.advance(30)
        with caplog.at_level("WARNING", logger="tradeguard.gateway"):
            soon = gateway.enter("TQQQ", qty=10, intent="09:31 breakout")  # an ordinary retry
        assert soon.outcome is Outcome.DUPLICATE and "first claimed" not in soon.reason
        assert not caplog.records

        clock.advance(24 * 3600)
        with caplog.at_level("WARNING", logger="tradeguard.gateway"):
            later = gateway.enter("TQQQ", qty=10, intent="09:31 breakout")
        assert later.outcome is Outcome.DUPLICATE
        assert "first claimed 24.0 h ago" in later.reason and "put the date in it" in later.reason
        assert any("first claimed 24.0 h ago" in r.getMessage() for r in caplog.records)
        skips = list(store.audit_records(AuditQuery(actions=(AuditAction.SKIP.value,))))
        assert "first claimed 24.0 h ago" in skips[-1].reason
        assert len(broker.orders()) == 1
