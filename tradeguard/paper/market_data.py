"""The paper server's market data: Alpaca's latest-trade, latest-quote and bars routes for stocks.

A plain alpaca-py bot reads prices with `StockHistoricalDataClient`; pointed at the paper server
(`url_override`) it gets the paper account's own prices, so a bot that decides on market data runs
with no account and no network. The latest trade and quote are the price the account would fill
at now (a quote with no spread); bars are served only from a `BarPrices` source (`paper-server
--bars`), and only bars that ended by the account's clock: no bar of the minute still running,
nothing ahead. Crypto and options data are not served.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradeguard.paper.prices import BarPrices, MinuteBar
from tradeguard.paper.refusals import rejection

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
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(value: Decimal) -> float | int:
    """A price as Alpaca's JSON has it: a number (alpaca-py reads floats)."""
    return int(value) if value == value.to_integral_value() else float(value)


def latest_trades_json(broker: PaperBroker, query: Mapping[str, str]) -> dict[str, Any]:
    """Render `GET /v2/stocks/trades/latest`: each priced symbol's trade at the account's price now."""
    now = broker.clock.now()
    trades: dict[str, Any] = {}
    for symbol in _symbols(query):
        price = broker.price(symbol)
        if price is not None:
            trades[symbol] = {
                "t": _stamp(now), "x": _EXCHANGE, "p": _number(price), "s": 100, "c": ["@"], "i": 0, "z": "C",
            }  # fmt: skip
    return {"trades": trades}


def latest_quotes_json(broker: PaperBroker, query: Mapping[str, str]) -> dict[str, Any]:
    """Render `GET /v2/stocks/quotes/latest`: bid and ask at the account's price now (no spread)."""
    now = broker.clock.now()
    quotes: dict[str, Any] = {}
    for symbol in _symbols(query):
        price = broker.price(symbol)
        if price is not None:
            quotes[symbol] = {
                "t": _stamp(now), "ax": _EXCHANGE, "ap": _number(price), "as": 1,
                "bx": _EXCHANGE, "bp": _number(price), "bs": 1, "c": ["R"], "z": "C",
            }  # fmt: skip
    return {"quotes": quotes}


def _when(query: Mapping[str, str], name: str) -> datetime | None:
    text = (query.get(name) or "").strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise rejection(400, 40010001, f"invalid {name}: {text!r} is not an RFC 3339 time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


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
    start, end = _when(query, "start"), _when(query, "end")
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
