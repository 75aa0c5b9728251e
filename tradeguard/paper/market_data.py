"""The paper server's market data: Alpaca's latest-trade, latest-quote and bars routes for stocks.

A plain alpaca-py bot reads prices with `StockHistoricalDataClient`; pointed at the paper server
(`url_override`) it gets the paper account's own prices, so a bot that decides on market data runs
with no account and no network. The latest trade and quote are the price the account would fill
at now (a quote with no spread); bars are served only from a `BarPrices` source (`paper-server
--bars`), and only bars that ended by the account's clock: no bar of the minute still running,
nothing ahead. Crypto and options data are not served.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradeguard.paper.prices import BarPrices, MinuteBar
from tradeguard.paper.refusals import rejection
from tradeguard.paper.wire import parse_time

if TYPE_CHECKING:
    from tradeguard.paper.broker import PaperBroker

__all__ = ["bars_json", "latest_quotes_json", "latest_trades_json"]

_EXCHANGE = "V"  # IEX, the feed of Alpaca's free plan
_MAX_SYMBOLS = 100
_DEFAULT_LIMIT, _MAX_LIMIT = 1000, 10_000
_MINUTE_FRAMES = frozenset({"1min", "1t"})
_MINUTE = timedelta(minutes=1)
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def _symbols(query: Mapping[str, str]) -> list[str]:
    symbols = [s.strip().upper() for s in (query.get("symbols") or "").split(",") if s.strip()]
    if not symbols:
        raise rejection(400, 40010001, "missing symbols")  # wording assumed
    if len(symbols) > _MAX_SYMBOLS:
        raise rejection(400, 40010001, f"too many symbols (at most {_MAX_SYMBOLS})")  # wording assumed
    return symbols


def _stamp(at: datetime) -> str:
    """A time as Alpaca's market data has it: UTC, "Z", no fraction for a whole second (bars)."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(value: Decimal) -> float | int:
    """A price as Alpaca's JSON has it: a number (alpaca-py reads floats)."""
    return int(value) if value == value.to_integral_value() else float(value)


def _priced(broker: PaperBroker, query: Mapping[str, str]) -> Iterator[tuple[str, str, float | int]]:
    """Each asked symbol the account prices now, with the time and the price (the others left out)."""
    stamp = _stamp(broker.clock.now())
    for symbol in _symbols(query):
        price = broker.price(symbol)
        if price is not None:
            yield symbol, stamp, _number(price)


def latest_trades_json(broker: PaperBroker, query: Mapping[str, str]) -> dict[str, Any]:
    """Render `GET /v2/stocks/trades/latest`: each priced symbol's trade at the account's price now."""
    return {
        "trades": {
            symbol: {"t": at, "x": _EXCHANGE, "p": price, "s": 100, "c": ["@"], "i": 0, "z": "C"}
            for symbol, at, price in _priced(broker, query)
        }
    }


def latest_quotes_json(broker: PaperBroker, query: Mapping[str, str]) -> dict[str, Any]:
    """Render `GET /v2/stocks/quotes/latest`: bid and ask at the account's price now (no spread)."""
    return {
        "quotes": {
            symbol: {
                "t": at,
                "ax": _EXCHANGE,
                "ap": price,
                "as": 1,
                "bx": _EXCHANGE,
                "bp": price,
                "bs": 1,
                "c": ["R"],
                "z": "C",
            }
            for symbol, at, price in _priced(broker, query)
        }
    }


def _bar_json(bar: MinuteBar) -> dict[str, Any]:
    return {
        "t": _stamp(bar.at), "o": _number(bar.open), "h": _number(bar.high), "l": _number(bar.low),
        "c": _number(bar.close), "v": bar.volume, "n": 0, "vw": _number(bar.close),
    }  # fmt: skip


def bars_json(broker: PaperBroker, query: Mapping[str, str]) -> dict[str, Any]:
    """Render `GET /v2/stocks/bars`: 1-minute bars that ended by the account's clock, paged.

    Raises:
        OrderRejected: 400/422 for a bad symbol list, time, limit, page token or another timeframe.
    """
    symbols = _symbols(query)
    frame = (query.get("timeframe") or "").strip().lower()
    if frame not in _MINUTE_FRAMES:
        raise rejection(
            422, 42210000, f"the paper server serves 1Min bars only, not {query.get('timeframe')!r}"
        )
    limit_text = (query.get("limit") or str(_DEFAULT_LIMIT)).strip()
    token = (query.get("page_token") or "0").strip()
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= _MAX_LIMIT:
        raise rejection(422, 42210000, f"invalid limit {limit_text!r} (1 to {_MAX_LIMIT})")
    if not token.isdigit():
        raise rejection(400, 40010001, f"invalid page_token {token!r}")
    start, end = parse_time(query.get("start"), "start"), parse_time(query.get("end"), "end")
    source, now = broker.prices, broker.clock.now()
    # The token indexes every bar of the request, ended or not: that list does not change while
    # the clock runs, so a minute ending between two pages shifts no page (review42: it did, and
    # the next page began with the bar the last one ended with). Only ended bars are served.
    rows: list[tuple[str, MinuteBar]] = []
    if isinstance(source, BarPrices):
        for symbol in sorted(set(symbols)):
            rows.extend((symbol, bar) for bar in source.ended(symbol, _END_OF_TIME, start, end))
    if (query.get("sort") or "asc").lower() == "desc":
        rows.reverse()
    first, limit = int(token), int(limit_text)
    ended = [i for i in range(first, len(rows)) if rows[i][1].at + _MINUTE <= now]
    bars: dict[str, list[dict[str, Any]]] = {}
    for i in ended[:limit]:
        symbol, bar = rows[i]
        bars.setdefault(symbol, []).append(_bar_json(bar))
    more = len(ended) > limit  # an ended bar after this page (one not ended yet is not said)
    return {"bars": bars, "next_page_token": str(ended[limit]) if more else None}
