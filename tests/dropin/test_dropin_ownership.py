"""What a drop-in client closes, and a dedup window too short to work (audit 7a D7, D8).

A bot often runs several agents over one claim store, or hands its own gateway to the drop-in:
closing one client must not close what the others still trade through (G5 would then refuse
their exits). A dedup window near zero would make every order without a client_order_id look
held up past half the window and send nothing, exits included: it is refused when configured.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alpaca.trading.enums import OrderSide

from tests.dropin.kit import as_order, guarded_client, held, market, store_url
from tradeguard import ClaimStore, ConfigError, GuardedTradingClient, ManualClock, Settings
from tradeguard.paper.server import PaperServer

BUY, SELL = OrderSide.BUY, OrderSide.SELL


def test_closing_one_client_leaves_a_shared_store_open_for_the_other(
    server: PaperServer, tmp_path: Path, clock: ManualClock
) -> None:
    with ClaimStore(store_url(tmp_path), clock=clock) as shared:
        with guarded_client(server, shared, clock=clock, agent_id="alpha") as alpha:
            alpha.submit_order(market("SPY", 3, BUY, client_order_id="alpha-in"))
        with guarded_client(server, shared, clock=clock, agent_id="beta") as beta:
            beta.submit_order(market("QQQ", 4, BUY, client_order_id="beta-in"))
            assert as_order(beta.close_position("QQQ")).qty == "4"
        assert held(server, "QQQ") == 0 and held(server, "SPY") == 3
        assert shared.position("alpha", "SPY").qty == 3  # still open after both clients closed


def test_closing_a_client_leaves_the_gateway_it_was_given_working(
    server: PaperServer, claims: str, clock: ManualClock
) -> None:
    with guarded_client(server, claims, clock=clock) as first:
        gateway = first.gateway
        second = GuardedTradingClient("paper-key", "paper-secret", url_override=server.url, gateway=gateway)
        second.submit_order(market("SPY", 2, BUY, client_order_id="second-in"))
        second.close()
        sold = as_order(first.submit_order(market("SPY", 2, SELL, client_order_id="first-out")))
        assert sold.qty == "2" and held(server, "SPY") == 0


@pytest.mark.parametrize("window", [0, 0.001, 0.5])
def test_a_dedup_window_under_a_second_is_refused_with_a_way_out(window: float) -> None:
    with pytest.raises(ConfigError, match=r"dedup_window_secs must be at least 1 s.*client_order_id"):
        Settings(dedup_window_secs=window)
    with pytest.raises(ConfigError, match="dedup_window_secs"):
        GuardedTradingClient("k", "s", store="sqlite://", dedup_window_secs=window)
