"""Fault plans: loading and validation with line numbers, deterministic matching, FaultyBroker."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeguard.clock import ManualClock
from tradeguard.domain import BrokerOrder, OrderClass, OrderStatus, OrderType, ReplaceRequest, TimeInForce
from tradeguard.errors import BrokerUnavailable, ConfigError, OrderRejected, OutcomeUnknown
from tradeguard.faults import Fault, FaultAction, FaultPlan
from tradeguard.paper import PaperBroker
from tradeguard.ports import Broker
from tradeguard.testing import FaultyBroker, make_request

PLAN = """\
seed: 7
faults:
  - route: POST /v2/orders          # method and path
    match: {symbol: TQQQ, side: sell}
    nth: 1
    action: accept_then_timeout
    delay_secs: 30
  - route: GET /v2/positions/{symbol}
    action: reject
    status: 404
    body: {code: 40410000, message: position does not exist}
"""


def plan_of(*faults: dict[str, Any], seed: int = 0) -> FaultPlan:
    return FaultPlan(faults=tuple(Fault(**f) for f in faults), seed=seed)


# ---- loading and validation -------------------------------------------------------------------


def test_a_yaml_plan_loads_with_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    plan = FaultPlan.load(path)
    assert plan.seed == 7
    first, second = plan.faults
    assert (first.route, first.action, dict(first.match), first.nth) == (
        "POST /v2/orders",
        FaultAction.ACCEPT_THEN_TIMEOUT,
        {"symbol": "TQQQ", "side": "sell"},
        1,
    )
    assert first.effective_delay_secs == 30
    assert (second.effective_status, second.effective_body) == (
        404,
        {"code": 40410000, "message": "position does not exist"},
    )


def test_a_json_plan_loads_too(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text('{"seed": 3, "faults": [{"route": "GET /v2/account", "action": "error", "status": 503}]}')
    plan = FaultPlan.load(path)
    assert (plan.seed, plan.faults[0].effective_status) == (3, 503)


def test_action_defaults() -> None:
    defaults = {
        FaultAction.ACCEPT_THEN_ERROR: 504,
        FaultAction.REJECT: 403,
        FaultAction.ERROR: 500,
        FaultAction.RATE_LIMIT: 429,
    }
    for action, status in defaults.items():
        assert Fault("POST /v2/orders", action).effective_status == status
    assert Fault("POST /v2/orders", FaultAction.RATE_LIMIT).effective_body == "rate limit exceeded"
    assert Fault("POST /v2/orders", FaultAction.DELAY).effective_delay_secs == 1.0


def test_an_empty_plan_has_no_faults() -> None:
    assert FaultPlan.parse("") == FaultPlan()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "faults:\n  - route: POST /v2/orders\n    action: foo\n",
            "plan.yaml:3: unknown action 'foo' (expected one of accept_then_timeout, accept_then_error, "
            "reject, error, delay, drop, rate_limit)",
        ),
        (
            "faults:\n  - route: POST /v2/orders\n    action: drop\n    colour: red\n",
            "plan.yaml:4: unknown key 'colour' (expected one of route, action, match, nth, probability, "
            "delay_secs, status, body)",
        ),
        ("seed: 1\nfault: []\n", "plan.yaml:2: unknown key 'fault' (expected one of seed, faults)"),
        ("faults:\n  - route: GET /v2/nope\n    action: drop\n", "plan.yaml:2: unknown route 'GET /v2/nope'"),
        (
            "faults:\n  - route: POST /v2/orders\n    match: {sym: X}\n    action: drop\n",
            "plan.yaml:3: match field 'sym' does not apply to POST /v2/orders",
        ),
        ("faults:\n  - route: GET /v2/clock\n    nth: 0\n    action: drop\n", "plan.yaml:3: nth must be"),
        ("faults:\n  - {route: GET /v2/clock, action: drop, probability: 2}\n", "plan.yaml:2: probability"),
        (
            "faults:\n  - route: GET /v2/clock\n    action: drop\n    status: 500\n",
            "plan.yaml:4: status does not apply to action drop",
        ),
        (
            "faults:\n  - route: GET /v2/clock\n    action: error\n    status: 404\n",
            "plan.yaml:4: status of error must be 500-599, got 404",
        ),
        ("faults:\n  - route: GET /v2/clock\n", "plan.yaml:2: a fault needs 'action'"),
        ("faults:\n  - {route: GET /v2/clock, action: drop, action: delay}\n", "plan.yaml:2: duplicate key"),
        ("seed: seven\n", "plan.yaml:1: seed must be an integer"),
        ("faults: {}\n", "plan.yaml:1: faults must be a list"),
        ("faults:\n  - route: [unclosed\n", "plan.yaml:3:"),
        ("- just\n- a list\n", "plan.yaml:1: a fault plan must be a mapping"),
    ],
)
def test_a_malformed_plan_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        FaultPlan.parse(text, source="plan.yaml")
    assert str(info.value).startswith(message)


def test_a_missing_plan_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read fault plan"):
        FaultPlan.load(tmp_path / "absent.yaml")


def test_faults_built_in_code_are_validated_too() -> None:
    with pytest.raises(ConfigError, match="unknown action 'explode'"):
        Fault("POST /v2/orders", "explode")  # type: ignore[arg-type]
    assert Fault("delete /v2/positions/TQQQ/", FaultAction.DROP).route == "DELETE /v2/positions/TQQQ"


# ---- matching -----------------------------------------------------------------------------------


def test_nth_counts_only_the_calls_that_match() -> None:
    injector = plan_of(
        {"route": "POST /v2/orders", "match": {"side": "sell"}, "nth": 2, "action": "drop"}
    ).injector()
    calls = [("buy", False), ("sell", False), ("buy", False), ("sell", True), ("sell", False)]
    for side, fires in calls:
        assert (injector.check("POST", "/v2/orders", {"side": side}) is not None) is fires


def test_match_compares_numbers_as_numbers_and_text_without_case() -> None:
    fault = Fault("POST /v2/orders", FaultAction.DROP, match={"symbol": "tqqq", "qty": 10})
    assert fault.wants("POST", "/v2/orders", {"symbol": "TQQQ", "qty": 10.0})
    assert not fault.wants("POST", "/v2/orders", {"symbol": "TQQQ", "qty": 11})
    assert not fault.wants("POST", "/v2/orders", {"symbol": "TQQQ"})


def test_route_placeholders_and_literal_paths() -> None:
    any_symbol = Fault("GET /v2/positions/{symbol}", FaultAction.DROP)
    one_symbol = Fault("GET /v2/positions/TQQQ", FaultAction.DROP)
    assert any_symbol.wants("GET", "/v2/positions/SQQQ", {})
    assert one_symbol.wants("GET", "/v2/positions/TQQQ", {})
    assert not one_symbol.wants("GET", "/v2/positions/SQQQ", {})
    assert not any_symbol.wants("DELETE", "/v2/positions/SQQQ", {})


def test_the_first_fault_in_plan_order_wins_and_each_counts_alone() -> None:
    injector = plan_of(
        {"route": "GET /v2/account", "nth": [2], "action": "drop"},
        {"route": "GET /v2/account", "action": "error"},
    ).injector()
    actions = [injector.check("GET", "/v2/account", {}) for _ in range(3)]
    assert [a.action if a else None for a in actions] == ["error", "drop", "error"]
    assert [f.fault.action for f in injector.fired()] == ["error", "drop", "error"]


def test_probability_is_reproducible_under_the_seed() -> None:
    def draws(seed: int) -> list[bool]:
        plan = plan_of({"route": "GET /v2/clock", "probability": 0.5, "action": "drop"}, seed=seed)
        injector = plan.injector()
        return [injector.check("GET", "/v2/clock", {}) is not None for _ in range(200)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert 60 < sum(draws(7)) < 140


# ---- FaultyBroker in process ------------------------------------------------------------------


def faulty(*faults: dict[str, Any]) -> tuple[FaultyBroker, PaperBroker, ManualClock]:
    clock = ManualClock()
    paper = PaperBroker(clock=clock)
    return FaultyBroker(paper, plan_of(*faults), clock=clock), paper, clock


def test_faulty_broker_implements_the_broker_port() -> None:
    assert isinstance(faulty()[0], Broker)


def test_without_faults_calls_pass_through() -> None:
    broker, paper, _ = faulty()
    order = broker.submit_order(make_request(client_order_id="a"))
    assert broker.get_order_by_client_id("a") == order
    assert broker.list_orders(status="all") == paper.orders()
    assert broker.list_positions() == paper.list_positions()
    assert broker.get_position("TQQQ") == paper.get_position("TQQQ")


def test_accept_then_timeout_places_the_order_and_raises_outcome_unknown_after_the_delay() -> None:
    broker, paper, clock = faulty(
        {"route": "POST /v2/orders", "action": "accept_then_timeout", "delay_secs": 30}
    )
    start = clock.now()
    with pytest.raises(OutcomeUnknown) as info:
        broker.submit_order(make_request(client_order_id="t"))
    assert info.value.status_code is None
    assert (clock.now() - start).total_seconds() == 30
    assert [o.client_order_id for o in paper.orders()] == ["t"]


def test_accept_then_timeout_hides_a_rejection_too() -> None:
    broker, paper, _ = faulty({"route": "POST /v2/orders", "action": "accept_then_timeout"})
    with pytest.raises(OutcomeUnknown):
        broker.submit_order(make_request(side="sell", client_order_id="short"))
    assert paper.orders() == []


def test_accept_then_error_places_the_order_and_reports_the_status() -> None:
    broker, paper, _ = faulty({"route": "POST /v2/orders", "action": "accept_then_error"})
    with pytest.raises(OutcomeUnknown) as info:
        broker.submit_order(make_request(client_order_id="e"))
    assert info.value.status_code == 504
    assert "504 Gateway Time-out" in info.value.body["raw"]
    assert len(paper.orders()) == 1


def test_reject_answers_with_the_plans_body_and_places_nothing() -> None:
    body = {"code": 40310000, "message": "insufficient buying power"}
    broker, paper, _ = faulty({"route": "POST /v2/orders", "action": "reject", "status": 403, "body": body})
    with pytest.raises(OrderRejected) as info:
        broker.submit_order(make_request())
    assert (info.value.status_code, info.value.code, info.value.message, info.value.body) == (
        403,
        40310000,
        "insufficient buying power",
        body,
    )
    assert paper.orders() == []


def test_a_404_reject_on_a_lookup_reads_as_not_found() -> None:
    broker, paper, _ = faulty(
        {"route": "GET /v2/orders:by_client_order_id", "action": "reject", "status": 404},
        {"route": "GET /v2/positions/{symbol}", "action": "reject", "status": 404},
    )
    broker.submit_order(make_request(client_order_id="landed"))
    # The POST landed but the lookup misses: the race a resolver must survive.
    assert broker.get_order_by_client_id("landed") is None
    assert paper.get_order_by_client_id("landed") is not None
    assert broker.get_position("TQQQ") is None


@pytest.mark.parametrize(
    ("fault", "status"),
    [({"action": "error", "status": 503}, 503), ({"action": "drop"}, None)],
)
def test_error_and_drop_on_submit_are_outcome_unknown_and_place_nothing(
    fault: dict[str, object], status: int | None
) -> None:
    broker, paper, _ = faulty({"route": "POST /v2/orders", **fault})
    with pytest.raises(OutcomeUnknown) as info:
        broker.submit_order(make_request())
    assert info.value.status_code == status
    assert paper.orders() == []


def test_rate_limit_on_submit_is_broker_unavailable_and_places_nothing() -> None:
    # Alpaca refuses before processing and the adapter's retry is off: nothing placed, resend at once.
    broker, paper, _ = faulty({"route": "POST /v2/orders", "action": "rate_limit"})
    with pytest.raises(BrokerUnavailable) as info:
        broker.submit_order(make_request())
    assert info.value.status_code == 429
    assert paper.orders() == []


def test_rate_limit_on_a_read_is_broker_unavailable() -> None:
    broker, _, _ = faulty({"route": "GET /v2/positions", "action": "rate_limit"})
    with pytest.raises(BrokerUnavailable) as info:
        broker.list_positions()
    assert info.value.status_code == 429


def test_delay_waits_on_the_clock_then_answers_normally() -> None:
    broker, _, clock = faulty({"route": "POST /v2/orders", "action": "delay", "delay_secs": 5})
    start = clock.now()
    assert broker.submit_order(make_request()).status is OrderStatus.FILLED
    assert (clock.now() - start).total_seconds() == 5


def test_cancel_and_list_orders_routes_are_faultable() -> None:
    broker, paper, _ = faulty(
        {"route": "DELETE /v2/orders/{id}", "action": "accept_then_error", "status": 500},
        {"route": "GET /v2/orders", "match": {"status": "all"}, "action": "error"},
    )
    order = broker.submit_order(
        make_request(
            client_order_id="r",
            order_type=OrderType.LIMIT,
            limit_price=Decimal(50),
            time_in_force=TimeInForce.GTC,
        )
    )
    with pytest.raises(OutcomeUnknown):
        broker.cancel_order(order.id)
    canceled = paper.get_order(order.id)
    assert canceled is not None and canceled.status is OrderStatus.CANCELED
    assert broker.list_orders(status="closed") != []
    with pytest.raises(OutcomeUnknown):
        broker.list_orders(status="all")


def test_a_shared_injector_counts_calls_across_wrappers() -> None:
    plan = plan_of({"route": "GET /v2/positions", "nth": 2, "action": "drop"})
    injector = plan.injector()
    one, two = FaultyBroker(PaperBroker(), injector), FaultyBroker(PaperBroker(), injector)
    one.list_positions()
    with pytest.raises(OutcomeUnknown):
        two.list_positions()


_yaml_scalars = (
    st.none() | st.booleans() | st.integers(-3, 700) | st.floats(allow_nan=False) | st.text(max_size=10)
)
_yaml_values = st.recursive(
    _yaml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
)
_fault_entries = st.fixed_dictionaries(
    {},
    optional={
        "route": st.sampled_from(["POST /v2/orders", "GET /v2/positions/{symbol}", "GET /v2/x"])
        | _yaml_values,
        "action": st.sampled_from([a.value for a in FaultAction]) | _yaml_values,
        "match": st.dictionaries(st.sampled_from(["symbol", "side", "qty", "nope"]), _yaml_values, max_size=2)
        | _yaml_values,
        "nth": st.integers(-1, 3) | st.lists(st.integers(-1, 3), max_size=2) | _yaml_values,
        "probability": st.floats(-1, 2) | _yaml_values,
        "delay_secs": st.floats(-1, 100) | _yaml_values,
        "status": st.integers(100, 700) | _yaml_values,
        "body": _yaml_values,
        "extra": _yaml_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.fixed_dictionaries(
            {}, optional={"seed": _yaml_values, "faults": st.lists(_fault_entries, max_size=3)}
        ),
        _yaml_values,
    )
)
def test_any_plan_document_loads_or_is_a_config_error(document: object) -> None:
    try:
        plan = FaultPlan.parse(yaml.safe_dump(document), source="fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml:")
    else:
        assert all(isinstance(f.action, FaultAction) for f in plan.faults)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_plan_text_loads_or_is_a_config_error(text: str) -> None:
    try:
        FaultPlan.parse(text, source="fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml")


def resting_bid(broker: FaultyBroker) -> BrokerOrder:
    return broker.submit_order(
        make_request(
            client_order_id="bid",
            order_type=OrderType.LIMIT,
            limit_price=Decimal(90),
            time_in_force=TimeInForce.GTC,
        )
    )


def test_get_order_and_replace_order_go_through_the_plan() -> None:
    broker, paper, _ = faulty(
        {"route": "GET /v2/orders/{id}", "action": "reject", "status": 404},
        {"route": "PATCH /v2/orders/{id}", "match": {"limit_price": 91}, "action": "reject", "status": 422},
    )
    order = resting_bid(broker)
    assert broker.get_order(order.id) is None  # a 404 on a lookup reads as "not found"
    assert paper.get_order(order.id) is not None
    with pytest.raises(OrderRejected) as info:
        broker.replace_order(order.id, ReplaceRequest(limit_price=Decimal(91)))
    assert info.value.status_code == 422
    assert paper.get_order(order.id).status is OrderStatus.NEW  # type: ignore[union-attr]
    new = broker.replace_order(order.id, ReplaceRequest(limit_price=Decimal(92)))  # not matched: passes
    assert new.replaces == order.id


def test_accept_then_timeout_on_a_replacement_replaces_and_raises_outcome_unknown() -> None:
    broker, paper, clock = faulty(
        {"route": "PATCH /v2/orders/{id}", "action": "accept_then_timeout", "delay_secs": 5}
    )
    order = resting_bid(broker)
    start = clock.now()
    with pytest.raises(OutcomeUnknown):
        broker.replace_order(order.id, ReplaceRequest(limit_price=Decimal(91)))
    assert (clock.now() - start).total_seconds() == 5
    live = paper.get_order_by_client_id("bid")
    assert live is not None and (live.replaces, live.limit_price) == (order.id, 91)


def test_a_fault_can_target_one_order_by_its_id() -> None:
    broker, paper, _ = faulty()
    order = resting_bid(broker)
    targeted = FaultyBroker(
        paper, plan_of({"route": "GET /v2/orders/{id}", "match": {"id": order.id}, "action": "error"})
    )
    with pytest.raises(OutcomeUnknown):
        targeted.get_order(order.id)
    assert targeted.get_order("another") is None


def test_a_submit_fault_can_match_the_order_class_and_the_trail() -> None:
    broker, paper, _ = faulty(
        {"route": "POST /v2/orders", "match": {"order_class": "bracket"}, "action": "error"},
        {"route": "POST /v2/orders", "match": {"trail_percent": 5}, "action": "drop"},
    )
    broker.submit_order(make_request(client_order_id="plain"))  # simple: neither fires
    with pytest.raises(OutcomeUnknown):
        broker.submit_order(
            make_request(
                client_order_id="b",
                order_class=OrderClass.BRACKET,
                time_in_force=TimeInForce.GTC,
                take_profit_limit_price=Decimal(110),
                stop_loss_stop_price=Decimal(90),
            )
        )
    with pytest.raises(OutcomeUnknown, match="connection closed"):
        broker.submit_order(
            make_request(
                side="sell", client_order_id="t", order_type=OrderType.TRAILING_STOP, trail_percent=Decimal(5)
            )
        )
    assert [o.client_order_id for o in paper.orders()] == ["plain"]


def test_a_plan_as_text_reads_back_as_the_same_plan() -> None:
    plan = plan_of(
        {"route": "POST /v2/orders", "nth": [1, 3], "action": "accept_then_timeout", "delay_secs": 30},
        {"route": "GET /v2/orders:by_client_order_id", "action": "reject", "status": 404,
         "body": {"code": 40410000, "message": "order not found"}, "probability": 0.5},
        {"route": "POST /v2/orders", "match": {"symbol": "TQQQ"}, "action": "error"},
    )  # fmt: skip
    assert FaultPlan.parse(plan.as_text()) == plan
