"""PaperBroker: the `Broker` port simulated in process with Alpaca's semantics.

It models (ALPACA.md) market, limit, stop, stop-limit and trailing stop orders (`ioc`/`fok`
included); bracket, OTO and OCO orders with their legs (`classes`, `matching`); replacement
(`replace`); fills from a `PriceSource`, optional partial fills; positions with `qty_available`;
client order ids unique forever; Alpaca's order checks (`accept`, `rules`) with its exact error
bodies; an asset master (`assets`). Every refusal raises `OrderRejected`. Left out on purpose:
day-order expiry, market hours (the paper market is always open), margin, fees, options.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from tradeguard.clock import Clock, SystemClock
from tradeguard.domain import (
    BrokerOrder,
    BrokerPosition,
    OrderRequest,
    PositionIntent,
    ReplaceRequest,
    Side,
    TimeInForce,
    symbol_key,
)
from tradeguard.errors import BrokerUnavailable, ConfigError, OrderRejected
from tradeguard.paper.accept import accept, venue_symbol
from tradeguard.paper.assets import Asset, AssetBook, load_assets, select_assets
from tradeguard.paper.matching import cancel_group, match, step
from tradeguard.paper.prices import PriceSource, to_price
from tradeguard.paper.replace import replace_order
from tradeguard.paper.rules import QTY_STEP, rejection, unprocessable
from tradeguard.paper.state import PaperState, account_document, paper_account_id
from tradeguard.paper.statefile import StateFile
from tradeguard.paper.venue import Venue
from tradeguard.ports import account_key_from_id

__all__ = ["DEFAULT_CASH", "PaperBroker"]

DEFAULT_CASH = Decimal(100_000)


_ZERO = Decimal(0)


class PaperBroker:
    """An Alpaca paper account in memory (or in a state file), behind the `Broker` port.

    Which symbols trade: those in the asset list that ships with tradeguard (`paper/assets.csv`,
    about eighty common US stocks and ETFs), those added by `assets` or `assets_path`, and those
    the account was given a price for (`set_price`, or the symbols a price source names:
    `FixedPrices` keys, `RecordedPrices` and `CsvBarPrices` symbols). Symbols the account holds
    or has orders in stay tradable. Any other symbol is refused as Alpaca refuses it (422
    ``asset "XYZ" not found``): a typo never fills. With no price source every tradable symbol
    trades at `DEFAULT_PRICE` (100.00).

    Orders that do not trade at once wait for `set_price()` or `step()`. With a state file every
    change is written before the call returns; if the write fails, the account is put back as it
    was before the call and `BrokerUnavailable` (HTTP 500 over the paper server) says so.

    Thread-safe: every call holds one lock, since the paper server calls it from many threads.

    Args:
        prices: Where fill prices come from; None fills every tradable symbol at `DEFAULT_PRICE`.
        clock: Time of orders and of price lookups.
        cash: Starting cash of a new account (ignored when `state_path` already holds one).
        allow_short: Whether a sell with no long position may open a short.
        max_fill_qty: Fill at most this many shares of an order per matching pass; the rest
            stays `partially_filled` until `step()` or `set_price()` (Alpaca paper fills are
            sometimes partial). None fills whole orders.
        fill_on_submit: Match a marketable order as it is submitted, so the acknowledgement
            already shows the fill. False leaves every order `new` until `step()`, like a
            slow venue.
        state_path: A file that keeps the account across restarts: a snapshot and a journal line
            per change, written before the call returns (`tradeguard.paper.statefile` states
            what survives what). Its folder must take files: that is checked at once.
        fsync_every_change: fsync each change to the state file before the call returns, so
            it survives a power loss too (without it: a killed process loses nothing).
        assets: Assets to add to the shipped list (replacing shipped ones of the same symbol).
        assets_path: A CSV file of assets to add (see `tradeguard.paper.assets`).

    Raises:
        ConfigError: `state_path` is a folder, cannot be written or is not a paper account;
            `assets_path` is not an asset file; `max_fill_qty` is not positive.
    """

    def __init__(
        self,
        *,
        prices: PriceSource | None = None,
        clock: Clock | None = None,
        cash: Decimal | int | str = DEFAULT_CASH,
        allow_short: bool = False,
        max_fill_qty: Decimal | int | None = None,
        fill_on_submit: bool = True,
        state_path: str | os.PathLike[str] | None = None,
        fsync_every_change: bool = False,
        assets: Iterable[Asset] | None = None,
        assets_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if max_fill_qty is not None and Decimal(max_fill_qty) <= 0:
            raise ConfigError(f"max_fill_qty must be positive, got {max_fill_qty}")
        book = AssetBook.shipped()
        if assets_path is not None:
            book = book.merged(load_assets(assets_path))
        if assets is not None:
            book = book.merged(assets)
        self._fill_on_submit = fill_on_submit
        self._lock = threading.RLock()
        self._file = (
            None if state_path is None else StateFile(state_path, fsync_every_change=fsync_every_change)
        )
        state = PaperState(cash=Decimal(cash))
        if self._file is not None:
            state = self._file.load(state)
        self._venue = Venue(
            state=state,
            prices=prices,
            clock=clock or SystemClock(),
            assets=book,
            allow_short=allow_short,
            max_fill=None if max_fill_qty is None else Decimal(max_fill_qty),
        )
        self._created_at = self._venue.now()
        # Hold the lock around a change; write it, or put the account back as it was. Every
        # check runs before the first change, so a refusal (`OrderRejected`) leaves nothing to
        # undo; any other failure, a failed write included, restores the account. One object
        # for every change: it keeps no state of its own (the lock is reentrant).
        self._changing = _Changing(self)

    @property
    def clock(self) -> Clock:
        """The clock the account runs on."""
        return self._venue.clock

    @property
    def account_key(self) -> str:
        """The key naming this paper account (`ports.account_key_of`), from its account id.

        The id is made from the seed kept in the state file, so the account served over HTTP
        (`GET /v2/account` "id", which `AlpacaBroker` reads) is named the same way. A state file
        not written yet (no change so far) is written when the key is first read: a claim store
        records the key (its agents' accounts, each claim's `coid_scope`), and an account that
        came back under another key after a restart would leave its claims to "another
        account" for good. A failed write keeps the key for this process only, as before.
        """
        file = self._file
        if file is not None and not file.written:
            with contextlib.suppress(BrokerUnavailable), self._changing:
                pass  # the first write of the account (`_save` on leaving)
        return _account_key_of_seed(self._venue.state.account_key)

    # ---- the Broker port -------------------------------------------------------------------

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Place an order with Alpaca's checks; return it as acknowledged (filled if marketable).

        Raises:
            OrderRejected: With Alpaca's status, code and body (see ALPACA.md).
            BrokerUnavailable: The state file could not be written; nothing was placed.
        """
        # `self._changing` spelled out: the hottest call of the paper broker skips two calls.
        with self._lock:
            venue = self._venue
            try:
                order = accept(venue, request)
                if self._fill_on_submit:
                    match(venue, order)
                answer = venue.state.broker_order(order)
            except OrderRejected:
                raise  # refused before any change: nothing to undo
            except BaseException:
                self._restore()
                raise
            if self._file is not None:
                self._save()
            return answer

    def get_order_by_client_id(
        self, client_order_id: str, *, follow: bool = True, nested: bool = True
    ) -> BrokerOrder | None:
        """Return the order with this client_order_id, or None (Alpaca: 404 order not found).

        Args:
            client_order_id: The id.
            follow: Follow `replaced_by` to the live order of the chain (the port's contract);
                False answers as Alpaca's endpoint does, with the order that carries the id.
            nested: Render the order's legs inside it.
        """
        with self._lock:
            state = self._venue.state
            order_id = state.by_client_id.get(client_order_id)
            if order_id is None:
                return None
            order = state.orders[order_id]
            return state.broker_order(state.successor(order) if follow else order, nested=nested)

    def get_order(self, order_id: str, *, nested: bool = True) -> BrokerOrder | None:
        """Return the order with this broker id (its legs inside unless `nested` is False), or None."""
        with self._lock:
            state = self._venue.state
            order = state.orders.get(order_id)
            return None if order is None else state.broker_order(order, nested=nested)

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
        until: datetime | None = None,
        side: Side | None = None,
        direction: str = "desc",
        nested: bool = False,
    ) -> list[BrokerOrder]:
        """List orders like `GET /v2/orders`: newest first unless `direction="asc"`.

        Without `nested`, legs are listed as orders of their own; with it, inside their parent
        only; "open" leaves out `held` legs, as Alpaca's listing does (`PaperState.listed`).

        Raises:
            OrderRejected: 422 for a status other than open, closed or all.
        """
        if status not in {"open", "closed", "all"}:
            raise unprocessable(f"invalid status {status}")
        wanted = {venue_symbol(s) for s in symbols} if symbols else None
        with self._lock:
            state = self._venue.state
            found = [
                o
                for o in state.listed(status, nested=nested)
                if (wanted is None or o.symbol in wanted)
                and (after is None or o.created_at > after)
                and (until is None or o.created_at < until)  # both bounds exclusive, as Alpaca's
                and (side is None or o.side is side)
            ]
            if direction != "asc":
                found.reverse()
            return [state.broker_order(o, nested=nested) for o in found[: max(limit, 0)]]

    def list_positions(self) -> list[BrokerPosition]:
        """Return every open position, by symbol."""
        with self._lock:
            positions = (self._position(symbol) for symbol in sorted(self._venue.state.qty))
            return [p for p in positions if p is not None]

    def get_position(self, symbol: str) -> BrokerPosition | None:
        """Return the position in `symbol` ("BTC/USD" or "BTCUSD" for a crypto pair), or None when flat."""
        with self._lock:
            return self._position(self._held_symbol(symbol))

    def position_qty(self, symbol: str) -> Decimal:
        """Return the signed shares held in `symbol` (0 when flat): `get_position(...).qty` alone.

        For callers that watch the position (the replay samples it after every event) and need
        none of what a position read builds (the shares held by open orders, the market value).
        """
        with self._lock:
            qty = self._venue.state.qty
            if symbol in qty:  # the account's own name (what `_held_symbol` finds first)
                return qty[symbol]
            return qty.get(self._held_symbol(symbol), _ZERO)

    def cancel_order(self, order_id: str) -> None:
        """Cancel an open order at once, and the rest of its bracket, OTO or OCO group.

        Raises:
            OrderRejected: 404 "order not found", or 422 when the order is already final.
        """
        with self._changing as state:
            order = state.orders.get(order_id)
            if order is None:
                raise rejection(404, 40410000, "order not found")
            if order.status.is_terminal:
                raise unprocessable(f'order is already in "{order.status.value}" state', 42210000)
            cancel_group(self._venue, order)

    def replace_order(self, order_id: str, request: ReplaceRequest) -> BrokerOrder:
        """Replace an open order; return the new one (the old one becomes `replaced`).

        See `tradeguard.paper.replace` for the rules and how a partly filled order is replaced.

        Raises:
            OrderRejected: 404 "order not found", or Alpaca's refusal; nothing changed.
        """
        with self._changing as state:
            old = state.orders.get(order_id)
            if old is None:
                raise rejection(404, 40410000, "order not found")
            new = replace_order(self._venue, old, request)
            if self._fill_on_submit and not state.dormant(new):
                match(self._venue, new)
            return state.broker_order(new)

    # ---- the rest of Alpaca's account API ----------------------------------------------------

    def cancel_all_orders(self) -> list[str]:
        """Cancel every open order; return their ids."""
        with self._changing as state:
            canceled: list[str] = []
            for order in state.open_orders():
                if order.status.is_open:
                    canceled += [o.id for o in cancel_group(self._venue, order)]
            return canceled

    def close_position(
        self, symbol: str, *, qty: Decimal | None = None, percentage: Decimal | None = None
    ) -> BrokerOrder:
        """Send a market order that closes all of a position, `qty` shares or `percentage` of it.

        Raises:
            OrderRejected: 404 "position does not exist" when flat; 403 "insufficient qty ..."
                when open orders hold the shares, as at Alpaca.
        """
        with self._lock:
            symbol = self._held_symbol(symbol)  # the orders' name ("BTC/USD" for "BTCUSD")
            held = self._venue.state.qty.get(symbol, Decimal(0))
            if held == 0:
                raise rejection(404, 40410000, "position does not exist")
            amount = abs(held)
            if qty is not None and percentage is not None:  # wording assumed
                raise unprocessable("only one of qty or percentage is accepted")
            if qty is not None:
                amount = qty
            elif percentage is not None:
                if not 0 < percentage <= 100:
                    raise unprocessable("percentage must be between 0 and 100")
                # Alpaca "would only sell fractional if position is originally fractional": a
                # percentage of a whole-share position closes whole shares (rounded down).
                step = QTY_STEP if amount != amount.to_integral_value() else Decimal(1)
                amount = (amount * percentage / 100).quantize(step, ROUND_DOWN)
            closing = PositionIntent.SELL_TO_CLOSE if held > 0 else PositionIntent.BUY_TO_CLOSE
            side = Side.SELL if held > 0 else Side.BUY
            asset = self._venue.asset(symbol)
            # A crypto order is gtc or ioc (a day order is refused): close a pair good till canceled.
            tif = TimeInForce.GTC if asset is not None and asset.is_crypto else TimeInForce.DAY
            request = OrderRequest(symbol, side, "", qty=amount, time_in_force=tif, position_intent=closing)
            return self.submit_order(request)

    def close_all_positions(self, *, cancel_orders: bool = False) -> dict[str, BrokerOrder | OrderRejected]:
        """Close every position; return each symbol's closing order or the refusal."""
        with self._lock:
            if cancel_orders:
                self.cancel_all_orders()
            results: dict[str, BrokerOrder | OrderRejected] = {}
            for symbol in sorted(self._venue.state.qty):
                named = symbol.replace("/", "")  # as the position is listed
                try:
                    results[named] = self.close_position(symbol)
                except OrderRejected as exc:
                    results[named] = exc
            return results

    def account(self) -> dict[str, Any]:
        """Return the account in the shape of Alpaca's `GET /v2/account`."""
        with self._lock:
            venue = self._venue
            values = [q * venue.mark(s) for s, q in venue.state.qty.items()]
            return account_document(
                account_id=paper_account_id(venue.state.account_key),
                cash=venue.state.cash,
                long_value=sum((v for v in values if v > 0), Decimal(0)),
                short_value=sum((v for v in values if v < 0), Decimal(0)),
                buying_power=venue.buying_power(),
                shorting_enabled=venue.allow_short,
                created_at=self._created_at,
            )

    def list_assets(
        self,
        *,
        status: str | None = None,
        asset_class: str | None = None,
        exchange: str | None = None,
        attributes: str | None = None,
    ) -> list[Asset]:
        """Return the tradable assets like `GET /v2/assets` (see `assets.select_assets`)."""
        with self._lock:
            return select_assets(
                self._venue.tradable_assets(),
                status=status,
                asset_class=asset_class,
                exchange=exchange,
                attributes=attributes,
            )

    def get_asset(self, symbol_or_asset_id: str) -> Asset | None:
        """Return the asset with this symbol or id, or None (Alpaca: 404 asset not found)."""
        with self._lock:
            return self._venue.find_asset(symbol_or_asset_id)

    # ---- test controls ---------------------------------------------------------------------

    def orders(self) -> list[BrokerOrder]:
        """Return every order the account ever accepted, oldest first (legs as orders of their own)."""
        with self._lock:
            state = self._venue.state
            return [state.broker_order(o, nested=False) for o in state.orders.values()]

    def order_count(self) -> int:
        """Return how many orders the account holds (every order, unless some were forgotten)."""
        return len(self._venue.state.orders)

    def forget_terminal_orders(self, before: datetime, *, keep: Callable[[str], bool] | None = None) -> int:
        """Forget filled, canceled, expired and rejected orders last changed before `before`.

        Opt-in, for long simulations whose memory should follow the live account, not its
        history (a replay calls it; nothing else does). What is kept: every open order, every
        order linked to another (legs, parents, replacements), every order `keep` names by its
        client_order_id, and all positions and cash (they never read past orders). What changes:
        a forgotten order is no longer found by id or client_order_id, nor listed. Safe when no
        later call asks for an order that old; the caller knows its horizon.

        Args:
            before: Orders whose last change is older than this may go.
            keep: Called with a terminal order's client_order_id; True keeps it.

        Returns:
            How many orders were forgotten.

        Raises:
            ConfigError: The account keeps a state file (its journal counts the orders).
        """
        if self._file is not None:
            raise ConfigError("a paper account with a state file keeps every order")
        with self._lock:
            return self._venue.state.forget_terminal(before, keep)

    @property
    def prices(self) -> PriceSource | None:
        """The account's price source (None: every tradable symbol at `DEFAULT_PRICE`)."""
        return self._venue.prices

    def price(self, symbol: str) -> Decimal | None:
        """Return the price `symbol` would fill at now, or None if there is none."""
        with self._lock:
            return self._venue.price(venue_symbol(symbol))

    def set_price(self, symbol: str, price: Decimal | int | str | None) -> list[BrokerOrder]:
        """Pin the price of `symbol` (None unpins it), then trade the open orders that cross.

        A pinned symbol is tradable even when no asset list names it.

        Returns:
            The orders that changed in this pass (filled, triggered, or trailing stops moved).
        """
        symbol = venue_symbol(symbol)  # "BTCUSD" pins the account's "BTC/USD"
        if type(price) is Decimal and price.is_finite() and price > 0:
            # What `to_price` returns for it: Decimal(str(d)) is d again, digit for digit.
            pinned: Decimal | None = price
        else:
            pinned = None if price is None else to_price(price, f"set_price({symbol})")
        with self._lock:
            state = self._venue.state
            if not state.open_by_symbol.get(symbol):
                # No open order of the symbol (a replay's every price): the pin is the one change,
                # and `step` would find nothing to trade. `_changing`'s work, spelled out for it.
                if pinned is None:
                    state.set_prices.pop(symbol, None)
                else:
                    state.set_prices[symbol] = pinned
                if self._file is not None:
                    self._save()
                return []
        with self._changing as state:
            if pinned is None:
                state.set_prices.pop(symbol, None)
            else:
                state.set_prices[symbol] = pinned
            return [state.broker_order(o) for o in step(self._venue, symbol)]

    def step(self, at: datetime | None = None) -> list[BrokerOrder]:
        """Run one matching pass over every open order at current prices; return what changed.

        Args:
            at: Run the pass as of this past time instead: at its prices, over the orders
                created by then, fills stamped then. For a ticker that fell behind the clock
                (`paper-server --bars` at a high `--speed`): a minute's close it slept through
                still trades the orders it reached, as it would have on time.
        """
        with self._lock:
            if not self._venue.state.open_ids:
                return []  # nothing rests (a sim's every minute, a server's every tick): no write
        with self._changing as state:
            self._venue.as_of = at
            try:
                return [state.broker_order(o) for o in step(self._venue, None)]
            finally:
                self._venue.as_of = None

    def close(self) -> None:
        """Fold the state file's journal into its snapshot and flush it to disk (no-op without one).

        The broker stays usable: the next change reopens the file.

        Raises:
            BrokerUnavailable: The snapshot could not be written (the journal still holds it all).
        """
        with self._lock:
            if self._file is not None:
                self._file.close(self._venue.state)

    # ---- internals (lock held) ---------------------------------------------------------------

    def _position(self, symbol: str) -> BrokerPosition | None:
        held = self._venue.state.position(symbol, self._venue.mark(symbol))
        if held is None or "/" not in symbol:
            return held
        # Alpaca lists a crypto position without the slash its orders have ("BTCUSD" for
        # "BTC/USD", alpaca-py issue #490); the paper account does too, so code that matches
        # positions with orders or ledgers is tested against the names it will meet.
        return dataclasses.replace(held, symbol=symbol.replace("/", ""))

    def _held_symbol(self, symbol: str) -> str:
        """Return the account's name for the position `symbol` names, with or without a slash."""
        wanted = symbol.strip().upper()
        qty = self._venue.state.qty
        if wanted in qty:
            return wanted
        key = symbol_key(wanted)
        return next((held for held in qty if symbol_key(held) == key), wanted)

    def _save(self) -> None:
        if self._file is not None:
            try:
                self._file.save(self._venue.state)
            except BrokerUnavailable:
                self._restore()
                raise

    def _restore(self) -> None:
        if self._file is not None:
            self._venue.state = self._file.restore()


class _Changing:
    """`PaperBroker._changing`: a plain context manager (a generator one costs a frame per call)."""

    __slots__ = ("_broker",)

    def __init__(self, broker: PaperBroker) -> None:
        self._broker = broker

    def __enter__(self) -> PaperState:
        broker = self._broker
        broker._lock.acquire()
        return broker._venue.state

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        broker = self._broker
        try:
            if kind is None:
                if broker._file is not None:
                    broker._save()
            elif not issubclass(kind, OrderRejected):
                broker._restore()
        finally:
            broker._lock.release()


@functools.lru_cache(maxsize=64)
def _account_key_of_seed(seed: str) -> str:
    """The account key of the paper account whose state holds `seed` (read on every exit: cached)."""
    return account_key_from_id(paper_account_id(seed))
