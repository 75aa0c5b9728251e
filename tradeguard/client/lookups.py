"""What the drop-in reads to answer as alpaca-py would: asset ids, prices, ids taken, refusals.

Each function reads the gateway's store or broker (the account the guarded orders go to) and
returns what `GuardedTradingClient` needs: the symbol an asset id names, a notional exit in
shares, Alpaca's 422 for a client_order_id another decision holds, Alpaca's 403 for an exit with
nothing free to sell, Alpaca's 404 for a close of a position the broker does not hold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from decimal import ROUND_DOWN, Decimal
from typing import Any
from uuid import UUID

import requests
from alpaca.common.exceptions import APIError

from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.client.convert import DropInOrder
from tradeguard.client.errors import ClientOrderIdReused, InvalidOrder, OrderNotSent, api_error
from tradeguard.domain import BrokerPosition, Claim, OrderSpec, Side, crypto_pair, ledger_symbol
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import BrokerError, StoreError
from tradeguard.gateway import OrderGateway
from tradeguard.ports import ForwardingBroker

__all__ = [
    "SHARE_STEP",
    "id_at_broker",
    "id_taken",
    "in_shares",
    "insufficient",
    "intent_mismatch",
    "no_position",
    "nothing_to_close",
    "nothing_to_sell",
    "symbol_of",
]

logger = logging.getLogger("tradeguard.client")

SHARE_STEP = Decimal("0.000000001")  # Alpaca takes up to 9 decimal places of a share


def symbol_of(
    gateway: OrderGateway, symbol_or_asset_id: UUID | str, read_asset: Callable[[UUID], dict[str, Any]]
) -> str:
    """Return the symbol `close_position` names: an asset id (a UUID) is looked up, as at Alpaca.

    The account the orders go to is asked (the guard's broker): Alpaca's `get_asset` through
    the adapter, the paper broker's own list in process, else `read_asset` (alpaca-py's own
    read). An id no asset has is Alpaca's 404; a failed read sends nothing.
    """
    text = str(symbol_or_asset_id).strip()
    try:
        asset_id = symbol_or_asset_id if isinstance(symbol_or_asset_id, UUID) else UUID(text)
    except ValueError:
        return text.upper()  # a symbol never parses as a UUID
    broker = gateway.broker
    while isinstance(broker, ForwardingBroker):
        broker = broker.inner
    if isinstance(broker, AlpacaBroker):
        try:
            asset = broker.client.get_asset(asset_id)
        except requests.RequestException as exc:
            raise OrderNotSent(f"asset {asset_id} could not be read ({exc}); nothing was sent") from exc
        return str(asset["symbol"] if isinstance(asset, dict) else asset.symbol).upper()
    find = getattr(broker, "get_asset", None)  # the paper broker in process
    if find is None:
        return str(read_asset(asset_id)["symbol"]).upper()
    found = find(str(asset_id))
    if found is None:
        raise api_error(404, 40410000, "asset not found")
    return str(found.symbol).upper()


def in_shares(gateway: OrderGateway, order: DropInOrder) -> OrderSpec:
    """Return a notional order that closes a position as the shares its dollars come to now.

    Alpaca takes a notional sell of a long (and turns it into shares at its price); the guard
    sizes every exit in shares against what is held minus exits in flight (G3), so it does the
    turning itself, at the broker position's current price, rounded down to Alpaca's 9 decimal
    places. The order sent carries `qty` instead of `notional`.
    """
    notional = order.spec.notional
    assert notional is not None
    at_broker = gateway.broker.get_position(order.symbol)  # a failed read raises
    if at_broker is None or not at_broker.qty or not at_broker.market_value:
        raise InvalidOrder(f"a notional order that closes {order.symbol} needs its price; give qty")
    price = abs(at_broker.market_value / at_broker.qty)
    shares = (notional / price).quantize(SHARE_STEP, ROUND_DOWN)
    if shares <= 0:
        raise InvalidOrder(f"notional {notional} is less than a tradable share of {order.symbol}")
    logger.info(
        "%s $%s of %s closes a position: sent as %s shares at %s (exits are sized in shares)",
        order.side, notional, order.symbol, shares, price,
    )  # fmt: skip
    return replace(order.spec, notional=None, qty=shares)


def id_taken(gateway: OrderGateway, order: DropInOrder, error: StoreError) -> APIError | None:
    """Return Alpaca's 422 when the store refused the claim because another claim has its id.

    The store refuses a client_order_id already used for another decision (another symbol or
    side) with a StoreError; for the bot that is Alpaca's "client_order_id must be unique", not
    a store outage to retry. Looked up only on this failure path; a failed lookup leaves the
    store's error as it was (None), and so does the claim of this very order's decision (a
    retry that met a store outage: the id is its own, and the outage is what to report).
    """
    coid = order.client_order_id
    if coid is None:
        return None
    try:
        # Ids are unique per broker account (`ports.coid_scope`): the holder on this agent's.
        taken = gateway.store.get_by_client_order_id(coid, account_key=gateway.account_key)
    except StoreError:
        return None
    if taken is None or _own_decision(gateway, order, taken):
        return None
    return ClientOrderIdReused(
        f"{coid} already names {taken.side} {taken.symbol} ({taken.state}); nothing was sent ({error})"
    )


def _own_decision(gateway: OrderGateway, order: DropInOrder, claim: Claim) -> bool:
    """Whether `claim` is the decision `order` names by its client_order_id (as an entry or an exit)."""
    return (
        claim.agent_id == gateway.agent_id
        and claim.intent == f"coid:{order.client_order_id}"
        and claim.symbol == ledger_symbol(order.symbol)
        and claim.side is order.side
    )


def id_at_broker(gateway: OrderGateway, order: DropInOrder) -> APIError | None:
    """Return Alpaca's 422 when another order already carries the order's client_order_id.

    Read only when the guard refuses an exit without sending it (nothing free to sell): Alpaca
    checks the id first, so an id another decision's claim holds, a replacement was given
    (`replace_order_by_id`) or an order placed outside the guard carries is its 422, not its
    403. This order's own decision (a retry) is never refused so; a failed read leaves the 403.
    """
    coid = order.client_order_id
    if coid is None:
        return None
    try:
        holder = gateway.store.get_by_client_order_id(coid, account_key=gateway.account_key)
        if holder is not None:
            if (holder.symbol, holder.side, holder.intent) == (order.symbol, order.side, f"coid:{coid}"):
                return None
            found = f"{holder.side} {holder.symbol}, {holder.state}"
        else:
            at_broker = gateway.broker.get_order_by_client_id(coid)
            if at_broker is None:
                return None
            found = f"order {at_broker.id}, {at_broker.side} {at_broker.symbol}, {at_broker.status}"
    except (BrokerError, StoreError):
        return None
    return ClientOrderIdReused(f"{coid} is taken ({found}); nothing was sent")


def insufficient(
    gateway: OrderGateway,
    symbol: str,
    requested: Decimal | None,
    *,
    at_broker: BrokerPosition | None = None,
    why: str = "",
) -> APIError:
    """Return Alpaca's 403 for an exit with nothing available to sell (shares held by orders).

    The body carries what Alpaca's does (`available`, `existing_qty`, `held_for_orders`,
    `symbol`, and `related_orders`: the open orders holding the shares, which a bot may cancel
    before it closes again), from `at_broker` or else the broker's position when it can be
    read; a crypto pair's message names its coin, as Alpaca's does. `why` says what only the
    guard knows (shares at the broker that are not this agent's to sell yet).
    """
    body: dict[str, Any] = {"available": "0", "symbol": symbol}
    if at_broker is None:
        try:
            at_broker = gateway.broker.get_position(symbol)
        except BrokerError:  # the refusal stands; only its detail is missing
            at_broker = None
    if at_broker is not None:
        existing = abs(at_broker.qty)
        held_for_orders = existing - abs(at_broker.qty_available)
        body["existing_qty"] = str(existing)
        body["held_for_orders"] = str(held_for_orders)
        closing = Side.SELL if at_broker.qty > 0 else Side.BUY
        related = _holding_orders(gateway, symbol, closing) if held_for_orders > 0 else []
        if related:  # left out when none holds any, as in Alpaca's body
            body["related_orders"] = related
    asked = requested if requested is not None else body.get("existing_qty", "0")
    amounts = f"(requested: {asked}, available: 0)"
    pair = crypto_pair(symbol)
    if pair is not None:
        message = f"insufficient balance for {pair.partition('/')[0]} {amounts}"
    else:
        message = f"insufficient qty available for order {amounts}"
    if why:
        body["detail"] = why  # Alpaca's message stays word for word; the guard's reason beside it
    return api_error(403, 40310000, message, body)


def _holding_orders(gateway: OrderGateway, symbol: str, side: Side) -> list[str]:
    """Return the ids of the open orders on `side` in `symbol` (legs included); [] if unread.

    Read only on a refusal, for its body: a failed read leaves the list out, never the refusal.
    Alpaca's open-order listing leaves out `held` legs (an OTO's stop-loss after its entry
    filled, an OCO's stop leg), which hold shares all the same and which Alpaca's own body
    names: a bot that cancels the orders the body names and sells again was refused for good
    (audit 75). So the live claims in the symbol on that side (a bracket's, OTO's or OCO's legs
    are claims of their own) are read back by id and named while the broker still has them open.
    """
    try:
        listed = gateway.broker.list_orders(status="open", symbols=[symbol])
    except BrokerError:
        return []
    ids: list[str] = []
    for order in listed:
        for one in (order, *order.legs):
            if one.side is side and not one.status.is_terminal and one.id not in ids:
                ids.append(one.id)
    try:
        live = gateway.store.list_claims(
            states=[ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED], symbol=ledger_symbol(symbol)
        )
    except StoreError:
        return ids
    for claim in live:
        order_id = claim.broker_order_id
        if claim.side is not side or order_id is None or order_id in ids:
            continue
        try:
            # Another account's claim in a shared store is no order of this broker's: None.
            found = gateway.broker.get_order(order_id)
        except BrokerError:
            continue
        if found is not None and found.side is side and not found.status.is_terminal:
            ids.append(found.id)
    return ids


def intent_mismatch(side: Side) -> APIError:
    """Return Alpaca's 422 for a closing order (`*_to_close`) that would open: nothing held to close.

    Alpaca infers the intent from the position and refuses a `sell_to_close` of a symbol held
    flat or short (a `buy_to_close` of one flat or long) with this answer (ALPACA.md).
    """
    inferred = "sell_to_open" if side is Side.SELL else "buy_to_open"
    return api_error(422, 42210000, f"position intent mismatch, inferred: {inferred}")


def nothing_to_sell(gateway: OrderGateway, symbol: str, side: Side, requested: Decimal | None) -> APIError:
    """Return what Alpaca answers a closing order the guard found nothing to send for.

    The guard sends every exit `sell_to_close`/`buy_to_close`: when the broker holds nothing on
    the side the order closes (flat, or the other side: a phantom ledger, a caller's close of
    a symbol it does not hold), Alpaca refuses that with its 422 "position intent mismatch";
    shares all held by open orders (or not this agent's yet) are its 403 "insufficient qty
    available". A failed read keeps the 403 (never "flat" on a failed read).
    """
    try:
        at_broker = gateway.broker.get_position(symbol)
    except BrokerError:
        return insufficient(gateway, symbol, requested)
    held = Decimal(0) if at_broker is None else at_broker.qty
    if not (held > 0 if side is Side.SELL else held < 0):
        return intent_mismatch(side)
    return insufficient(gateway, symbol, requested, at_broker=at_broker)


def no_position() -> APIError:
    """Return Alpaca's 404 for closing a symbol the broker holds no position in."""
    return api_error(404, 40410000, "position does not exist")


def nothing_to_close(gateway: OrderGateway, symbol: str, requested: Decimal | None) -> APIError:
    """Return what Alpaca answers a close that found nothing to sell: 404 when the broker is flat.

    A close of a symbol the broker holds nothing of is Alpaca's 404 "position does not exist",
    whatever the ledger says (a phantom: the exit that found nothing already had the symbol
    reconciled); shares all held by open orders are its 403 "insufficient qty available". A
    failed read keeps the 403 (never "flat" on a failed read).
    """
    try:
        at_broker = gateway.broker.get_position(symbol)
    except BrokerError:
        return insufficient(gateway, symbol, requested)
    if at_broker is None or at_broker.qty == 0:
        return no_position()
    return insufficient(gateway, symbol, requested, at_broker=at_broker)
