"""One route registry: the paper server, fault plans and FaultyBroker all read `paper.routes`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tradeguard.clock import ManualClock
from tradeguard.domain import ReplaceRequest
from tradeguard.errors import OrderRejected
from tradeguard.faults import FaultPlan, FaultyBroker
from tradeguard.paper import PaperBroker
from tradeguard.paper.handlers import HANDLERS
from tradeguard.paper.routes import PORT_ROUTES, ROUTES, Route, route_for
from tradeguard.paper.server import PaperServer
from tradeguard.ports import Broker
from tradeguard.testing import make_request

SAMPLE_PARAMS = {"id": "6f1d2a8e-3c1b-4d55-9a55-2f0c7e1a9b10", "symbol": "TQQQ", "symbol_or_asset_id": "TQQQ"}


def reject_every_route() -> FaultPlan:
    """A plan with one `reject` fault per served route, each answering with its route's name."""
    return FaultPlan.parse(
        "faults:\n"
        + "".join(
            f"  - {{route: '{r.key}', action: reject, status: 403, body: {{message: '{r.name}'}}}}\n"
            for r in ROUTES
        )
    )


def test_routes_are_unique_by_name_and_by_method_and_path() -> None:
    assert len({r.name for r in ROUTES}) == len(ROUTES)
    assert len({r.key for r in ROUTES}) == len(ROUTES)


def test_the_server_has_a_handler_for_exactly_the_registered_routes() -> None:
    assert set(HANDLERS) == {r.name for r in ROUTES}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.key)
def test_a_real_path_finds_its_route(route: Route) -> None:
    assert route_for(f"{route.method} {route.concrete(SAMPLE_PARAMS)}") is route


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.key)
def test_every_served_route_can_be_targeted_by_a_fault_plan(route: Route) -> None:
    server = PaperServer(PaperBroker(), fault_plan=reject_every_route())
    reply, fault = server.respond(route.method, route.concrete(SAMPLE_PARAMS), {}, b"", authorized=True)
    assert fault is not None
    assert fault.route == route.key
    assert reply is not None and reply.status == 403
    assert server.fired_faults()[0].fault.route == route.key


def _port_methods() -> set[str]:
    return {name for name, _ in inspect.getmembers(Broker, inspect.isfunction) if not name.startswith("_")}


def test_every_port_method_has_exactly_one_route() -> None:
    assert set(PORT_ROUTES) == _port_methods()
    assert sorted(r.port_method for r in ROUTES if r.port_method) == sorted(_port_methods())


PORT_CALLS: dict[str, Callable[[Broker], Any]] = {
    "submit_order": lambda b: b.submit_order(make_request()),
    "get_order_by_client_id": lambda b: b.get_order_by_client_id("tg-test-1"),
    "list_orders": lambda b: b.list_orders(),
    "list_positions": lambda b: b.list_positions(),
    "get_position": lambda b: b.get_position("TQQQ"),
    "cancel_order": lambda b: b.cancel_order(SAMPLE_PARAMS["id"]),
    "get_order": lambda b: b.get_order(SAMPLE_PARAMS["id"]),
    "replace_order": lambda b: b.replace_order(SAMPLE_PARAMS["id"], ReplaceRequest(qty=Decimal(1))),
}


@pytest.mark.parametrize("port_method", sorted(PORT_CALLS))
def test_faulty_broker_counts_each_port_call_as_its_registered_route(port_method: str) -> None:
    assert set(PORT_CALLS) == _port_methods()
    faulty = FaultyBroker(PaperBroker(), reject_every_route(), clock=ManualClock())
    with pytest.raises(OrderRejected) as raised:
        PORT_CALLS[port_method](faulty)
    route = PORT_ROUTES[port_method]
    assert raised.value.message == route.name
    [fired] = faulty.injector.fired()
    assert fired.fault.route == route.key
    assert (fired.method, fired.path) == (route.method, route.concrete(SAMPLE_PARAMS))


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.key)
def test_every_placeholder_of_a_route_is_a_field_a_fault_may_match(route: Route) -> None:
    placeholders = {part[1:-1] for part in route.path.split("/") if part.startswith("{")}
    assert placeholders <= route.fields


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.key)
def test_every_served_route_answers_without_a_fault_plan(route: Route) -> None:
    # No route falls through to "endpoint not found" or an internal error: each has a handler
    # that answers in Alpaca's terms (a refusal of these sample inputs included).
    server = PaperServer(PaperBroker())
    reply, fault = server.respond(route.method, route.concrete(SAMPLE_PARAMS), {}, b"{}", authorized=True)
    assert fault is None and reply is not None
    assert reply.status < 500, reply.body
    if reply.status == 404:
        assert b"endpoint not found" not in reply.body
