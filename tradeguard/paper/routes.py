"""The route registry: every Alpaca REST route the paper server serves, listed once.

Each `Route` names a method, a path pattern (placeholders like ``{symbol}`` stand for one path
segment), a name, the fields a fault's ``match`` may name (the order's body fields, the query's
parameters, the path's placeholders), and the `Broker` port method that stands for it, if any.
Three users read this one table and keep no list of their own:

- the paper server dispatches each request to the handler of its route (`route_for`);
- a fault plan checks that its ``route:`` names a served route and its ``match`` fits it;
- `FaultyBroker` counts each port call as the route of that port method (`port_route`).

Pure data and matching, no I/O, so fault plans can use it without the simulator.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["PORT_ROUTES", "ROUTES", "Route", "port_route", "route_for", "segments_match", "split_route"]


@dataclass(frozen=True, slots=True)
class Route:
    """One served route.

    Attributes:
        method: The HTTP method, upper case.
        path: The path pattern, e.g. ``/v2/positions/{symbol}``.
        name: The route's name, which keys its handler in the paper server.
        fields: The fields a fault's ``match`` may name for this route.
        port_method: The `tradeguard.ports.Broker` method that stands for this route, or None.
    """

    method: str
    path: str
    name: str
    fields: frozenset[str]
    port_method: str | None = None

    @property
    def key(self) -> str:
        """The route as a fault plan writes it: ``"GET /v2/positions/{symbol}"``."""
        return f"{self.method} {self.path}"

    def params(self, path: str) -> dict[str, str]:
        """Return the values of the placeholders in `path` (``{"symbol": "TQQQ"}``)."""
        names = self.path.strip("/").split("/")
        values = path.strip("/").split("/")
        return {n[1:-1]: v for n, v in zip(names, values, strict=True) if n.startswith("{")}

    def concrete(self, values: Mapping[str, object]) -> str:
        """Return the path with each placeholder filled from `values` (extra keys are ignored)."""
        return self.path.format_map(values)


# The scalar fields of an order body (take_profit and stop_loss are objects: not matchable).
_ORDER_FIELDS = (
    "symbol side qty notional type order_type time_in_force limit_price stop_price client_order_id "
    "position_intent extended_hours order_class trail_price trail_percent"
)


def _route(method: str, path: str, name: str, fields: str, port_method: str | None = None) -> Route:
    return Route(method, path, name, frozenset(fields.split()), port_method)


ROUTES: tuple[Route, ...] = (
    _route("POST", "/v2/orders", "submit_order", _ORDER_FIELDS, "submit_order"),
    _route(
        "GET",
        "/v2/orders",
        "list_orders",
        "status limit after until direction nested side symbols",
        "list_orders",
    ),
    _route("DELETE", "/v2/orders", "cancel_all_orders", ""),
    _route("GET", "/v2/orders/{id}", "get_order", "id nested", "get_order"),
    _route(
        "PATCH",
        "/v2/orders/{id}",
        "replace_order",
        "id qty limit_price stop_price trail time_in_force client_order_id",
        "replace_order",
    ),
    _route("DELETE", "/v2/orders/{id}", "cancel_order", "id", "cancel_order"),
    _route(
        "GET",
        "/v2/orders:by_client_order_id",
        "get_order_by_client_id",
        "client_order_id nested",
        "get_order_by_client_id",
    ),
    _route("GET", "/v2/positions", "list_positions", "", "list_positions"),
    _route("DELETE", "/v2/positions", "close_all_positions", "cancel_orders"),
    # {symbol} is Alpaca's {symbol_or_asset_id}: the handlers resolve an asset id to its symbol.
    _route("GET", "/v2/positions/{symbol}", "get_position", "symbol", "get_position"),
    _route("DELETE", "/v2/positions/{symbol}", "close_position", "symbol qty percentage"),
    _route("GET", "/v2/assets", "list_assets", "status asset_class exchange attributes"),
    _route("GET", "/v2/assets/{symbol_or_asset_id}", "get_asset", "symbol_or_asset_id"),
    _route("GET", "/v2/account", "get_account", ""),
    _route("GET", "/v2/account/configurations", "get_account_configurations", ""),
    _route("GET", "/v2/clock", "get_clock", ""),
    _route("GET", "/v2/calendar", "get_calendar", "start end date_type"),
    # Market data (alpaca-py's StockHistoricalDataClient with `url_override`): paper/market_data.py
    _route("GET", "/v2/stocks/trades/latest", "latest_stock_trades", "symbols feed currency"),
    _route("GET", "/v2/stocks/quotes/latest", "latest_stock_quotes", "symbols feed currency"),
    _route(
        "GET",
        "/v2/stocks/bars",
        "stock_bars",
        "symbols timeframe start end limit page_token sort feed adjustment asof currency",
    ),
)
"""Every served route, in matching order."""

PORT_ROUTES: Mapping[str, Route] = MappingProxyType(
    {route.port_method: route for route in ROUTES if route.port_method is not None}
)
"""The route each `Broker` port method stands for, by method name."""


@functools.lru_cache(maxsize=1024)
def split_route(route: str) -> tuple[str, tuple[str, ...]]:
    """Split ``"get /v2/orders/{id}"`` into ``("GET", ("v2", "orders", "{id}"))``.

    Cached: a fault plan splits its route on every call it is asked about.
    """
    method, _, path = route.strip().partition(" ")
    return method.upper(), tuple(path.strip().strip("/").split("/"))


def segments_match(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    """Return whether `path` fits `pattern`, where a ``{placeholder}`` takes any one segment."""
    return len(pattern) == len(path) and all(
        p == s or (p.startswith("{") and p.endswith("}")) for p, s in zip(pattern, path, strict=True)
    )


def route_for(route: str) -> Route | None:
    """Return the served route that ``"METHOD /path"`` names (a pattern or a real path), or None."""
    method, path = split_route(route)
    for candidate in ROUTES:
        if method == candidate.method and segments_match(split_route(candidate.key)[1], path):
            return candidate
    return None


def port_route(port_method: str) -> Route:
    """Return the route the `Broker` port method `port_method` stands for.

    Raises:
        KeyError: No route stands for `port_method`.
    """
    return PORT_ROUTES[port_method]
