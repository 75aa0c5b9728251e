"""`AlpacaBroker`: the `Broker` port over alpaca-py's `TradingClient`, with tradeguard's transport policy.

The adapter owns how requests reach Alpaca:

- alpaca-py's hidden retry (every method, ``POST /v2/orders`` included, on 429 and 504) is turned
  off, and every request gets a (connect, read) timeout from `Settings` (`transport`).
- Requests go through the client's raw ``get`` / ``post`` / ``patch`` / ``delete`` and answers are converted
  by `convert`, so a status or exchange Alpaca adds later cannot fail a read.
- Every failure leaves as a `BrokerError` chosen by `errors.map_alpaca_error`.

The client is modified in place; do not share it with code that relies on alpaca-py's retry.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from alpaca.trading.client import TradingClient

from tradeguard.broker.alpaca.convert import (
    MalformedResponse,
    order_from_raw,
    order_payload,
    orders_from_raw,
    parse_time,
    position_from_raw,
    positions_from_raw,
    same_symbol,
)
from tradeguard.broker.alpaca.errors import Stage, map_alpaca_error
from tradeguard.broker.alpaca.errors_map import is_duplicate_client_order_id, is_not_found
from tradeguard.broker.alpaca.transport import apply_transport_policy
from tradeguard.config import Settings
from tradeguard.domain import (
    BrokerOrder,
    BrokerPosition,
    OrderClass,
    OrderRequest,
    OrderStatus,
    RejectKind,
    ReplaceRequest,
)
from tradeguard.errors import BrokerError, ConfigError, OrderRejected, OutcomeUnknown
from tradeguard.ports import account_key_from_id

__all__ = ["AlpacaBroker"]

_MAX_PAGE = 500  # Alpaca's largest `limit` for GET /v2/orders
# Each hop of a replacement chain is one GET (Alpaca allows 200 a minute): a longer chain is
# answered with OutcomeUnknown rather than a burst of reads.
_MAX_REPLACEMENT_HOPS = 100
_NESTED = {"nested": "true"}  # roll a bracket's/OTO's/OCO's legs up under it
_ORDER_QUERY_STATUSES = frozenset({"open", "closed", "all"})


# A failed `GET /v2/account` is tried again after this long (the key falls back meanwhile).
_ACCOUNT_RETRY_SECS = 30.0


def _credentials_key(client: TradingClient) -> str:
    """Name the account a client trades without asking Alpaca: its base URL and key id (or token).

    The fallback when `GET /v2/account` cannot be read, and the rule keys followed before they
    came from the account id. A hash, so the key id never reaches the claim store.
    """
    who = getattr(client, "_api_key", None) or getattr(client, "_oauth_token", None) or ""
    where = str(getattr(client, "_base_url", ""))
    return hashlib.sha256(f"{where}\n{who}".encode()).hexdigest()[:16]


class AlpacaBroker:
    """The `Broker` port over an alpaca-py `TradingClient`.

    Args:
        client: The client to wrap. Its hidden retry is turned off and its session gets timeouts.
        settings: Supplies ``connect_timeout_secs`` and ``request_timeout_secs``.

    Raises:
        ConfigError: A timeout is not positive, or alpaca-py no longer has the private attributes
            the transport policy needs.
    """

    def __init__(self, client: TradingClient, *, settings: Settings | None = None) -> None:
        self._settings = settings if settings is not None else Settings()
        apply_transport_policy(client, self._settings)
        self._client = client
        self._account_key: str | None = None
        self._account_read_after = 0.0  # monotonic time before which a failed read is not retried

    @property
    def account_key(self) -> str:
        """The key naming the account this client trades (`tradeguard.ports.account_key_of`).

        From the account's own id, read with `GET /v2/account` and kept once read: stable across
        key rotations, base URL spellings and the operator's own credentials, so every agent and
        CLI on the account registers the same key. While the read fails, the credentials' key (a
        key of the older rule, which `same_account` never tells apart from any account: the
        conservative sizing); the read is tried again after `_ACCOUNT_RETRY_SECS`, so a gateway
        that started during an outage moves to the account's key (and re-registers it) soon.
        """
        if self._account_key is not None:
            return self._account_key
        if time.monotonic() < self._account_read_after:
            return _credentials_key(self._client)
        try:
            with _translated(Stage.READ):
                raw = self._client.get("/account")
            account_id = raw.get("id") if isinstance(raw, dict) else None
            if not isinstance(account_id, str) or not account_id:
                raise MalformedResponse("GET /v2/account has no account id")
        except (BrokerError, MalformedResponse):
            self._account_read_after = time.monotonic() + _ACCOUNT_RETRY_SECS
            return _credentials_key(self._client)
        self._account_key = account_key_from_id(account_id)
        return self._account_key

    @classmethod
    def from_credentials(
        cls,
        api_key: str,
        secret_key: str,
        *,
        paper: bool = True,
        url_override: str | None = None,
        settings: Settings | None = None,
    ) -> AlpacaBroker:
        """Build the client and the adapter from explicit credentials (the environment is not read).

        Raises:
            ConfigError: A credential is empty or alpaca-py refused them.
        """
        if not api_key or not secret_key:
            raise ConfigError("Alpaca needs both an API key and a secret key")
        try:
            client = TradingClient(api_key, secret_key, paper=paper, url_override=url_override)
        except ValueError as exc:
            raise ConfigError(f"alpaca-py refused the credentials: {exc}") from exc
        return cls(client, settings=settings)

    @property
    def client(self) -> TradingClient:
        """The wrapped client, with the transport policy applied."""
        return self._client

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Place an order; return it as Alpaca acknowledged it.

        Safe to call again with the same client_order_id: Alpaca refuses the second copy with 422
        "client_order_id must be unique", and this method then returns the existing order.

        Raises:
            OrderRejected: Alpaca said no, or the order is invalid; nothing was placed.
            OutcomeUnknown: The order may exist; resolve with `get_order_by_client_id`.
            BrokerUnavailable: The request never left this process.
        """
        with _translated(Stage.PREPARE):
            payload = order_payload(request)
        try:
            with _translated(Stage.SUBMIT):
                order = order_from_raw(self._client.post("/orders", payload))
                if order.client_order_id != request.client_order_id:
                    raise MalformedResponse(
                        f"Alpaca acknowledged client_order_id {order.client_order_id!r}, "
                        f"sent {request.client_order_id!r}"
                    )
        except OutcomeUnknown as err:
            if is_duplicate_client_order_id(err):
                return self._adopt(request, err)
            raise
        return order

    def _adopt(self, request: OrderRequest, duplicate: OutcomeUnknown) -> BrokerOrder:
        """Return the order Alpaca already holds under the request's client_order_id."""
        cid = request.client_order_id
        details: dict[str, Any] = {
            "status_code": duplicate.status_code,
            "code": duplicate.code,
            "body": duplicate.body,
        }
        try:
            existing = self.get_order_by_client_id(cid)
        except BrokerError as exc:
            raise OutcomeUnknown(
                f"client_order_id {cid} is taken at Alpaca but the lookup failed: {exc}", **details
            ) from exc
        if existing is None:
            # A lookup may trail the order's acceptance; the claim stays UNKNOWN until it shows.
            raise OutcomeUnknown(
                f"client_order_id {cid} is taken at Alpaca but no order was found under it yet", **details
            )
        if not same_symbol(existing.symbol, request.symbol) or existing.side is not request.side:
            # Adopting another decision's order would book one fill for two claims.
            raise OrderRejected(
                f"client_order_id {cid} belongs to a different order "
                f"({existing.side} {existing.symbol}, id {existing.id}); this request was not placed",
                kind=RejectKind.ID_TAKEN,
                **details,
            )
        return existing

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """Return the live order of this client_order_id, or None on Alpaca's 404 40410000.

        Alpaca answers with the order that carries the id, which may have been replaced; this
        follows `replaced_by` to the live order of the chain (the port's contract), one
        `get_order` per replacement, and reads an order with legs nested.

        Raises:
            OutcomeUnknown: A replacement named by `replaced_by` cannot be read, or the chain
                is longer than this adapter follows.
            BrokerError: A read failed.
        """
        try:
            with _translated(Stage.READ):
                raw = self._client.get("/orders:by_client_order_id", {"client_order_id": client_order_id})
        except BrokerError as err:
            if is_not_found(err):
                return None
            raise
        with _translated(Stage.READ):
            order = order_from_raw(raw)
            if order.client_order_id != client_order_id:
                raise MalformedResponse(f"asked for {client_order_id!r}, got {order.client_order_id!r}")
        for _ in range(_MAX_REPLACEMENT_HOPS):
            if order.status is not OrderStatus.REPLACED or order.replaced_by is None:
                return self._with_legs(order)
            successor = self.get_order(order.replaced_by)
            if successor is None:
                raise OutcomeUnknown(
                    f"order {order.id} ({client_order_id}) was replaced by {order.replaced_by}, "
                    "which Alpaca does not return (yet)"
                )
            order = successor
        raise OutcomeUnknown(
            f"client_order_id {client_order_id} was replaced more than {_MAX_REPLACEMENT_HOPS} times; "
            "look its live order up by id"
        )

    def _with_legs(self, order: BrokerOrder) -> BrokerOrder:
        """Return `order` with its legs: read again nested when Alpaca sent them unrolled."""
        if order.order_class is OrderClass.SIMPLE or order.legs or order.raw.get("legs"):
            return order
        nested = self.get_order(order.id)
        if nested is None:
            raise OutcomeUnknown(f"order {order.id} was found by client_order_id but not by id")
        return nested

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
    ) -> list[BrokerOrder]:
        """List orders submitted after `after`, oldest first, reading every page.

        Unlike Alpaca's own ``limit``, `limit` never truncates: when more orders match, the call
        raises rather than return a partial list that could hide an open order.

        Args:
            status: "open", "closed" or "all".
            symbols: Only these symbols; an empty list matches nothing.
            after: Only orders submitted after this aware time.
            limit: The most orders the caller accepts.

        Raises:
            ConfigError: An argument is invalid.
            OutcomeUnknown: More than `limit` orders match, or a page could not be read.
            BrokerError: The read failed.
        """
        if status not in _ORDER_QUERY_STATUSES:
            raise ConfigError(f"status must be open, closed or all, got {status!r}")
        if limit < 1:
            raise ConfigError(f"limit must be positive, got {limit}")
        if after is not None and after.tzinfo is None:
            raise ConfigError("after must be timezone-aware")
        if symbols is not None and not symbols:
            return []
        # One more than the caller accepts: a single page then tells "all of them" from "more".
        page_size = min(limit + 1, _MAX_PAGE)
        params: dict[str, str] = {"status": status, "direction": "asc", "limit": str(page_size)}
        if symbols:
            params["symbols"] = ",".join(symbols)
        found: dict[str, BrokerOrder] = {}
        cursor = after
        while True:
            if cursor is not None:
                params["after"] = _rfc3339(cursor)
            with _translated(Stage.READ):
                page = orders_from_raw(self._client.get("/orders", params))
            fresh = [order for order in page if order.id not in found]
            found.update((order.id, order) for order in fresh)
            if len(found) > limit:
                raise OutcomeUnknown(f"more than {limit} orders match; refusing to return a truncated list")
            if len(page) < page_size:
                return list(found.values())
            if not fresh:
                raise OutcomeUnknown(f"order pages stopped advancing after {len(found)} orders")
            with _translated(Stage.READ):
                cursor = _next_cursor(page)

    def list_positions(self) -> list[BrokerPosition]:
        """Return every open position (Alpaca sends them all in one answer)."""
        with _translated(Stage.READ):
            positions = positions_from_raw(self._client.get("/positions"))
        return [position for position in positions if position.qty != 0]

    def get_position(self, symbol: str) -> BrokerPosition | None:
        """Return the position in `symbol`, or None when Alpaca answers 404 40410000 (flat)."""
        # Alpaca addresses crypto positions without the slash (BTCUSD); quote() keeps the
        # symbol inside one path segment whatever it contains.
        path = "/positions/" + quote(symbol.replace("/", ""), safe="")
        try:
            with _translated(Stage.READ):
                raw = self._client.get(path)
        except BrokerError as err:
            if is_not_found(err):
                return None
            raise
        with _translated(Stage.READ):
            position = position_from_raw(raw)
            if not same_symbol(position.symbol, symbol):
                raise MalformedResponse(f"asked for the {symbol} position, got {position.symbol}")
        return position if position.qty != 0 else None

    def cancel_order(self, order_id: str) -> None:
        """Request cancellation of an open order (Alpaca answers 204 and cancels asynchronously).

        Raises:
            OrderRejected: The order is unknown or no longer cancelable (404, 422).
            BrokerError: Any other failure.
        """
        if not order_id:
            raise ConfigError("cancel_order needs an order id")
        with _translated(Stage.CANCEL):
            self._client.delete("/orders/" + quote(order_id, safe=""))

    def get_order(self, order_id: str) -> BrokerOrder | None:
        """Return the order with this broker id (its legs nested), or None on Alpaca's 404 40410000."""
        try:
            with _translated(Stage.READ):
                raw = self._client.get("/orders/" + quote(order_id, safe=""), _NESTED)
        except BrokerError as err:
            if is_not_found(err):
                return None
            raise
        with _translated(Stage.READ):
            order = order_from_raw(raw)
            if order.id != order_id:
                raise MalformedResponse(f"asked for order {order_id}, got {order.id}")
        return order

    def replace_order(self, order_id: str, request: ReplaceRequest) -> BrokerOrder:
        """Replace an open order (`PATCH /v2/orders/{id}`); return the new order.

        Alpaca answers with a new order (new id, ``replaces`` = `order_id`); its success does not
        promise the replacement takes effect: if the old order fills first, the new one is
        rejected (Alpaca's documentation), so callers read the chain afterwards.

        Raises:
            OrderRejected: Alpaca refused the change; the old order stands.
            OutcomeUnknown: The replacement may or may not have happened.
        """
        if not order_id:
            raise ConfigError("replace_order needs an order id")
        numbers = {"qty": request.qty, "limit_price": request.limit_price, "stop_price": request.stop_price}
        body: dict[str, str] = {
            name: format(value, "f") for name, value in numbers.items() if value is not None
        }
        if request.trail is not None:
            body["trail"] = format(request.trail, "f")
        if request.time_in_force is not None:
            body["time_in_force"] = request.time_in_force.value
        if request.client_order_id is not None:
            body["client_order_id"] = request.client_order_id
        with _translated(Stage.REPLACE):
            order = order_from_raw(self._client.patch("/orders/" + quote(order_id, safe=""), body))
            if order.id == order_id or order.replaces not in (None, order_id):
                raise MalformedResponse(
                    f"the replacement of {order_id} came back as {order.id} (replaces {order.replaces})"
                )
        return order


@contextmanager
def _translated(stage: Stage) -> Iterator[None]:
    """Let `BrokerError` through and turn any other exception into one."""
    try:
        yield
    except BrokerError:
        raise
    except Exception as exc:
        raise map_alpaca_error(exc, stage) from exc


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _next_cursor(page: list[BrokerOrder]) -> datetime:
    """Return an `after` that re-reads the page's last instant, so no tied order is skipped.

    Alpaca's ``after`` is exclusive and several orders can share the last submitted_at of a
    page; stepping back one microsecond reads them again and the caller drops repeats by id.
    """
    times = [parse_time(order.raw.get("submitted_at"), "submitted_at") or order.created_at for order in page]
    known = [when for when in times if when is not None]
    if len(known) != len(times):
        raise MalformedResponse("an order has neither submitted_at nor created_at")
    return max(known) - timedelta(microseconds=1)
