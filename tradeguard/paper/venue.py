"""The simulated venue's context: the account, its prices, its assets and its settings.

Acceptance (`accept`), matching (`matching`) and replacement (`replace`) read the world through
one `Venue`; `PaperBroker` owns it and holds its lock around every use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tradeguard.clock import Clock
from tradeguard.domain import OrderClass, Side, canonical_symbol
from tradeguard.paper.assets import Asset, AssetBook, priced_asset
from tradeguard.paper.prices import DEFAULT_PRICE, PriceSource, named_symbols
from tradeguard.paper.state import PaperState

__all__ = ["SHORT_SALE_MARKUP", "Venue", "short_sale_price"]


@dataclass(slots=True)
class Venue:
    """What the paper venue's rules and matching read and change.

    Attributes:
        state: The account (replaced wholesale when a failed save is rolled back).
        prices: Where prices come from; None prices every tradable symbol at `DEFAULT_PRICE`.
        clock: The time of orders and of price lookups.
        assets: The listed assets.
        allow_short: Whether a sell with no long position may open a short.
        max_fill: The most shares of one order filled per matching pass (None: all).
    """

    state: PaperState
    prices: PriceSource | None
    clock: Clock
    assets: AssetBook
    allow_short: bool
    max_fill: Decimal | None
    # Set only for one matching pass as of a past time (`PaperBroker.step(at=...)`), lock held.
    as_of: datetime | None = None

    def now(self) -> datetime:
        """The venue's time: the clock's, or the past time a matching pass runs as of."""
        return self.clock.now() if self.as_of is None else self.as_of

    def price(self, symbol: str) -> Decimal | None:
        """Return the price `symbol` trades at now: pinned, else the source's, else None."""
        pinned = self.state.set_prices.get(symbol)
        if pinned is not None:
            return pinned
        if self.prices is None:
            return DEFAULT_PRICE
        now = self.now()
        found = self.prices.price(symbol, now)
        if found is None and "/" in symbol:  # a source may name a pair without its slash ("BTCUSD")
            found = self.prices.price(symbol.replace("/", ""), now)
        return found

    def mark(self, symbol: str) -> Decimal:
        """Price to value a position at: current, else last traded, else its entry price."""
        return (
            self.price(symbol)
            or self.state.last_price.get(symbol)
            or self.state.avg_price.get(symbol, Decimal(0))
        )

    def asset(self, symbol: str) -> Asset | None:
        """Return the asset `symbol` names on this venue, or None when it names none.

        A symbol is known when it is listed (the shipped list or the extra assets), when the
        account was given a price for it (`set_price`, or a price source naming it), or when
        the account already holds it or has orders in it (an old state file's symbols stay
        tradable, so nothing held becomes impossible to exit).
        """
        listed = self.assets.get(symbol)
        if listed is not None:
            return listed
        state = self.state
        if (
            symbol in state.set_prices
            or symbol in named_symbols(self.prices)
            or symbol in state.qty
            or any(o.symbol == symbol for o in state.orders.values())
        ):
            return priced_asset(symbol)
        return None

    def find_asset(self, symbol_or_id: str) -> Asset | None:
        """Return the asset with this symbol or asset id, or None."""
        found = self.asset(canonical_symbol(symbol_or_id))
        if found is not None:
            return found
        return next((a for a in self.tradable_assets() if a.id == symbol_or_id.strip()), None)

    def tradable_assets(self) -> list[Asset]:
        """Return every asset this venue knows: the listed ones, then the priced-only ones."""
        listed = list(self.assets)
        extra = (set(self.state.set_prices) | named_symbols(self.prices)) - {a.symbol for a in listed}
        return listed + [priced_asset(symbol) for symbol in sorted(extra)]

    def buying_power(self, excluding: str | None = None) -> Decimal:
        """Return the cash not spent on shorts nor reserved by open opening orders.

        Alpaca "applies a buying power check to both buy long and sell short positions", and
        open "buy long and sell short orders" reduce the buying power while "sell long and buy
        to cover orders do not replenish" it (its orders page). So an open buy reserves its
        estimated cost and an open short sale its value (`short_sale_price`); an open exit
        (a sell of a long, a buy to cover, legs and OCO orders) reserves nothing. A short
        position holds its market value once more: its proceeds came into cash, and it uses
        buying power as a long of that value would (the paper account is a cash account of
        multiplier 1), so shorting never raises the buying power. `excluding` names an order
        whose reservation does not count (the one being replaced).
        """
        state = self.state
        qty = state.qty
        reserved = Decimal(0)
        for order in state.open_orders():
            if order.id == excluding or order.is_leg or order.order_class is OrderClass.OCO:
                continue
            held = qty.get(order.symbol, _ZERO)
            if order.side is Side.BUY:
                if held >= 0:  # a buy to cover reserves nothing
                    reserved += order.remaining * (order.limit_price or self.mark(order.symbol))
            elif held <= 0:  # a sell of a long reserves nothing
                reserved += order.remaining * short_sale_price(order.limit_price, self.mark(order.symbol))
        shorts = sum((-q * self.mark(s) for s, q in qty.items() if q < 0), _ZERO)
        return max(state.cash - 2 * shorts - reserved, _ZERO)


def short_sale_price(limit: Decimal | None, price: Decimal | None) -> Decimal:
    """Return the price Alpaca values an opening short sale at, per share.

    "MAX(order's limit price, 3% above the current ask price)"; a market short at 3% above
    the ask (Alpaca's orders page, "Buying Power"). The paper venue's one price stands for the ask.
    """
    marked_up = (price or _ZERO) * SHORT_SALE_MARKUP
    return max(limit or _ZERO, marked_up)


SHORT_SALE_MARKUP = Decimal("1.03")
_ZERO = Decimal(0)
