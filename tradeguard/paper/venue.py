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

__all__ = ["Venue"]


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

    def now(self) -> datetime:
        """The venue's time."""
        return self.clock.now()

    def price(self, symbol: str) -> Decimal | None:
        """Return the price `symbol` trades at now: pinned, else the source's, else None."""
        pinned = self.state.set_prices.get(symbol)
        if pinned is not None:
            return pinned
        if self.prices is None:
            return DEFAULT_PRICE
        found = self.prices.price(symbol, self.clock.now())
        if found is None and "/" in symbol:  # a source may name a pair without its slash ("BTCUSD")
            found = self.prices.price(symbol.replace("/", ""), self.clock.now())
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
        """Return the cash not reserved by open opening buys.

        Open buys reserve their estimated cost, so two orders cannot spend the same cash. Exits
        (legs and OCO orders close a position) reserve nothing, as at Alpaca; `excluding` names
        an order whose reservation does not count (the one being replaced).
        """
        reserved = Decimal(0)
        for order in self.state.open_orders():
            if (
                order.side is not Side.BUY
                or order.id == excluding
                or order.is_leg
                or order.order_class is OrderClass.OCO
            ):
                continue
            reserved += order.remaining * (order.limit_price or self.mark(order.symbol))
        return max(self.state.cash - reserved, Decimal(0))
