"""`GuardedTradingClient`: a drop-in for alpaca-py's `TradingClient` whose orders go through the gateway.

A bot switches by changing one import. `submit_order` returns an alpaca-py `Order` as before;
a retry of the same order (same `client_order_id`, or the same content within
`dedup_window_secs` when none is set) returns the original order and sends nothing; an outcome
that stays unknown raises `OutcomeUnknown`. `close_position` becomes a guarded exit. Every other
method is alpaca-py's own, unchanged.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass
from alpaca.trading.models import Order
from alpaca.trading.requests import ClosePositionRequest
from alpaca.trading.requests import OrderRequest as AlpacaOrderRequest

from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.clock import Clock
from tradeguard.config import DEFAULT_STORE_URL, Settings
from tradeguard.domain import BrokerOrder, PositionIntent, Side
from tradeguard.domain.intents import Intent, Kind
from tradeguard.errors import BrokerUnavailable, ClaimInProgress, ConfigError, OrderRejected, OutcomeUnknown
from tradeguard.execution import OrderResult, Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.orders import build_spec, parse_side
from tradeguard.ports import Broker, ClaimLedger
from tradeguard.sessions.recorder import RecordTarget

__all__ = ["GuardedTradingClient", "to_alpaca_order"]

_CLOSES = {PositionIntent.SELL_TO_CLOSE, PositionIntent.BUY_TO_CLOSE}


def _value(field: Any) -> Any:
    """Return an enum's value, or the field itself."""
    return getattr(field, "value", field)


def to_alpaca_order(order: BrokerOrder) -> Order:
    """Return the alpaca-py `Order` for a broker order (its raw Alpaca JSON when it has it)."""
    if order.raw:
        try:
            return Order(**order.raw)
        except ValueError:
            pass  # a newer enum value: fall through to the fields we know
    created = order.created_at.isoformat() if order.created_at else None
    return Order(
        id=order.id,
        client_order_id=order.client_order_id,
        created_at=created,
        updated_at=order.updated_at.isoformat() if order.updated_at else created,
        submitted_at=created,
        asset_id="00000000-0000-0000-0000-000000000000",
        symbol=order.symbol,
        asset_class="us_equity",
        qty=None if order.qty is None else str(order.qty),
        notional=None if order.notional is None else str(order.notional),
        filled_qty=str(order.filled_qty),
        filled_avg_price=None if order.filled_avg_price is None else str(order.filled_avg_price),
        order_class="simple",
        order_type=order.order_type.value,
        type=order.order_type.value,
        side=order.side.value,
        time_in_force=order.time_in_force.value,
        limit_price=None if order.limit_price is None else str(order.limit_price),
        stop_price=None if order.stop_price is None else str(order.stop_price),
        status=order.status.value if order.status.value != "other" else "new",
        extended_hours=False,
        position_intent=None if order.position_intent is None else order.position_intent.value,
    )


def _api_error(result: OrderResult) -> APIError:
    """Rebuild the APIError alpaca-py would have raised for a rejection, so bots' handlers still work."""
    error = result.error
    status = error.status_code if error is not None and error.status_code else 403
    body = dict(error.body) if error is not None and error.body else {}
    body.setdefault("code", error.code if error is not None and error.code else status * 100000)
    body.setdefault("message", error.message if error is not None else result.reason)
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    error_text = json.dumps(body)
    return APIError(error_text, requests.HTTPError(f"{status} rejected", response=response))  # type: ignore[no-untyped-call]


class GuardedTradingClient(TradingClient):
    """alpaca-py's `TradingClient` with guarded order submission.

    Args:
        api_key: As for `TradingClient`.
        secret_key: As for `TradingClient`.
        oauth_token: As for `TradingClient`.
        paper: As for `TradingClient`.
        raw_data: As for `TradingClient` (affects pass-through calls only).
        url_override: As for `TradingClient` (e.g. the tradeguard paper server).
        store: A claim ledger (ClaimStore, MemoryClaimStore) or SQLAlchemy URL for the claims
            (default ``sqlite:///tradeguard.db``).
        agent_id: The bot's stable name.
        dedup_window_secs: Orders without a client_order_id and with identical content within
            this many seconds are one decision.
        settings: Timeouts and grace periods.
        clock: Time source (tests, replays).
        broker: Send orders to this broker instead of Alpaca (e.g. a PaperBroker: no network).
        record_to: Record what the guard sees as a session file (see `OrderGateway`).
    """

    def __init__(  # noqa: PLR0917 - the same positional arguments as alpaca-py's TradingClient
        self,
        api_key: str | None = None,
        secret_key: str | None = None,
        oauth_token: str | None = None,
        paper: bool = True,
        raw_data: bool = False,
        url_override: str | None = None,
        *,
        store: ClaimLedger | str = DEFAULT_STORE_URL,
        agent_id: str = "default",
        dedup_window_secs: float | None = None,
        settings: Settings | None = None,
        clock: Clock | None = None,
        broker: Broker | None = None,
        record_to: RecordTarget = None,
    ) -> None:
        super().__init__(api_key, secret_key, oauth_token, paper, raw_data, url_override)
        settings = settings or Settings()
        if dedup_window_secs is not None:
            settings = settings.with_changes(dedup_window_secs=dedup_window_secs)
        self.settings = settings
        if broker is None:
            # A separate client for guarded sends: its hidden retries are switched off and its
            # requests get timeouts, without changing this object's pass-through behaviour.
            inner = TradingClient(api_key, secret_key, oauth_token, paper, False, url_override)
            broker = AlpacaBroker(inner, settings=settings)
        self.gateway = OrderGateway(
            broker, store, agent_id=agent_id, settings=settings, clock=clock, record_to=record_to
        )

    def close(self) -> None:
        """Close the HTTP sessions and the claim store's connections."""
        broker = self.gateway.broker
        if isinstance(broker, AlpacaBroker):
            broker.client._session.close()
        self._session.close()
        self.gateway.store.close()

    def __enter__(self) -> GuardedTradingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit_order(self, order_data: AlpacaOrderRequest) -> Order:
        """Submit an order at most once per decision; see the module docstring.

        Raises:
            APIError: The broker rejected the order (as alpaca-py would).
            OutcomeUnknown: The order may or may not exist; calling again resolves it safely.
            ClaimInProgress: Another worker is sending this very order right now.
            BrokerUnavailable: The order never left this process; calling again is safe.
            ConfigError: An order shape tradeguard does not guard (brackets, OCO, legs, trailing).
        """
        fields = order_data.to_request_fields()
        if fields.get("order_class", "simple") not in ("simple", OrderClass.SIMPLE.value) or fields.get(
            "legs"
        ):
            raise ConfigError(
                f"tradeguard guards simple orders only, got order_class={fields.get('order_class')!r}"
            )
        side = parse_side(_value(fields.get("side")))
        pi_raw = _value(fields.get("position_intent"))
        default_pi = PositionIntent.BUY_TO_OPEN if side is Side.BUY else PositionIntent.SELL_TO_OPEN
        position_intent = PositionIntent(pi_raw) if pi_raw else default_pi
        spec = build_spec(
            qty=fields.get("qty"),
            notional=fields.get("notional"),
            order_type=str(_value(fields.get("type", "market"))),
            time_in_force=str(_value(fields.get("time_in_force", "day"))),
            limit_price=fields.get("limit_price"),
            stop_price=fields.get("stop_price"),
            extended_hours=bool(fields.get("extended_hours") or False),
            position_intent=position_intent,
            is_exit=False,
        )
        kind = Kind.EXIT if position_intent in _CLOSES else Kind.ENTRY
        symbol = str(fields.get("symbol") or "").upper()
        coid = fields.get("client_order_id")
        gateway = self.gateway
        if coid:
            intent = Intent(gateway.agent_id, kind, symbol, side, f"coid:{coid}")
            return self._order_or_raise(gateway.submit(intent, spec, client_order_id=str(coid)))
        return self._order_or_raise(gateway.submit_by_content(kind, symbol, side, spec))

    def close_position(
        self, symbol_or_asset_id: Any, close_options: ClosePositionRequest | None = None
    ) -> Order:
        """Close the position in a symbol as a guarded exit (one exit per position turn).

        `close_options.qty` closes part; `percentage` is not supported (give qty).
        """
        symbol = str(symbol_or_asset_id).upper()
        qty: Decimal | None = None
        if close_options is not None:
            if close_options.percentage is not None:
                raise ConfigError("close_position(percentage=...) is not supported by tradeguard; pass qty")
            qty = None if close_options.qty is None else Decimal(str(close_options.qty))
        gateway = self.gateway
        held = gateway.position(symbol)
        if held.is_flat:
            held = gateway.adopt_broker_position(symbol, why="close_position")
        # One close per position turn: exit decisions are keyed by name alone, so the name
        # carries the turn (a later position can be closed again).
        intent = f"close_position:turn{held.turn_id}"
        return self._order_or_raise(gateway.exit(symbol, intent=intent, qty=qty))

    @staticmethod
    def _order_or_raise(result: OrderResult) -> Order:
        if result.order is not None and result.outcome in (Outcome.SUBMITTED, Outcome.DUPLICATE):
            return to_alpaca_order(result.order)
        if result.outcome is Outcome.REJECTED:
            raise _api_error(result)
        if result.outcome is Outcome.NOT_SENT:
            raise BrokerUnavailable(result.reason)
        if result.outcome is Outcome.SKIPPED:
            # What Alpaca answers when closing a position it does not hold.
            missing = OrderRejected(
                "position does not exist",
                status_code=404,
                code=40410000,
                body={"code": 40410000, "message": "position does not exist"},
            )
            raise _api_error(OrderResult(result.outcome, result.claim, None, result.reason, missing))
        if result.outcome is Outcome.DUPLICATE:
            raise ClaimInProgress(result.reason)
        raise OutcomeUnknown(
            f"{result.reason}; the order may exist. Call again with the same order to resolve it "
            "by client_order_id (nothing is resent blind)",
            status_code=result.error.status_code if result.error else None,
        )
