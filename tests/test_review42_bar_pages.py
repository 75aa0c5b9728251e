"""review42: the bars' pages hold together while the paper server's clock runs between them.

alpaca-py follows `next_page_token` one request after another; a replayed day (`paper-server
--bars --speed 600`) moves ten minutes a second, so a minute ends between two pages. The token
was an index into the bars ended *at each request*: a bar ending in the meantime in an earlier
symbol's run (or, sorted newest first, at the head) shifted every later bar by one, so the next page
began with the bar the last page ended with. A bot got that minute twice (and its indicator a bar
that never was). Alpaca's token names where the next page starts, whatever ends meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from alpaca.data.historical.stock import StockHistoricalDataClient

from tests.test_paper_market_data import OPEN, _shipped_bars
from tradeguard import ManualClock, PaperBroker
from tradeguard.paper.prices import BarPrices
from tradeguard.paper.server import PaperServer


def _pages(clock: ManualClock, query: dict[str, Any], between: Callable[[], None]) -> list[tuple[str, str]]:
    """Every (symbol, bar time) of a paged read, in the order served; `between` runs between pages."""
    with PaperServer(PaperBroker(prices=BarPrices(_shipped_bars()), clock=clock)) as server:
        data = StockHistoricalDataClient("key", "secret", url_override=server.url)
        seen: list[tuple[str, str]] = []
        token = None
        while True:
            page = data.get("/stocks/bars", query | ({} if token is None else {"page_token": token}))
            assert isinstance(page, dict)
            seen.extend((symbol, bar["t"]) for symbol, bars in page["bars"].items() for bar in bars)
            token = page["next_page_token"]
            if token is None:
                return seen
            between()


def _clock() -> ManualClock:
    return ManualClock(OPEN + timedelta(minutes=10, seconds=30))  # 09:40:30 ET: 09:30-09:39 ended


@pytest.mark.parametrize(("symbols", "sort"), [("TQQQ,SQQQ", "asc"), ("TQQQ", "desc"), ("TQQQ,SQQQ", "desc")])
def test_a_minute_ending_between_pages_is_never_served_twice(symbols: str, sort: str) -> None:
    clock = _clock()
    query = {"symbols": symbols, "timeframe": "1Min", "limit": 4, "sort": sort}
    seen = _pages(clock, query, lambda: clock.advance(60))  # a minute ends between each two pages
    assert len(seen) == len(set(seen)), f"a bar served twice: {seen}"
    for symbol in symbols.split(","):
        times = [t for s, t in seen if s == symbol]
        # Each symbol's run is whole and in order: no bar skipped, none repeated.
        assert times == sorted(times, reverse=sort == "desc")
        stamps = sorted(times)
        first = OPEN.isoformat().replace("+00:00", "Z")
        assert stamps[0] == first
        assert len(stamps) >= 10


def test_bars_pages_with_a_still_clock_are_unchanged() -> None:
    query = {"symbols": "TQQQ,SQQQ", "timeframe": "1Min", "limit": 4}
    seen = _pages(_clock(), query, lambda: None)
    assert len(seen) == 20 and len(set(seen)) == 20  # ten ended minutes each, nothing ahead
