"""The paper broker's hot-path shortcuts change nothing a caller sees.

`BrokerOrder.raw` is rendered when first read: it must be the document an eager rendering made
when the BrokerOrder was made, whatever happened to the order since. `BrokerOrder`'s own
`__init__` must take what the dataclass one took. The open-order index per symbol must agree
with the orders. Order ids stay version-4 UUIDs, never repeated.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import os
import pickle
import random
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.mothers import limit
from tradeguard.clock import ManualClock
from tradeguard.domain import (
    BrokerOrder,
    OrderClass,
    OrderStatus,
    OrderType,
    ReplaceRequest,
    Side,
    TimeInForce,
)
from tradeguard.domain.orders import DeferredRaw
from tradeguard.errors import OrderRejected
from tradeguard.paper import PaperBroker
from tradeguard.paper.accept import new_uuid
from tradeguard.paper.orders import PaperOrder
from tradeguard.paper.state import TERMINAL, PaperState
from tradeguard.testing import make_request

Seen = list[tuple[BrokerOrder, str]]


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Seen]:
    """Record every BrokerOrder the paper broker makes, with Alpaca's JSON of it at that moment."""
    made: Seen = []
    original = PaperState.broker_order

    def recording(state: PaperState, order: PaperOrder, *, nested: bool = True) -> BrokerOrder:
        legs = [state.orders[i].to_alpaca() for i in order.leg_ids] if nested and order.leg_ids else None
        eager = json.dumps(order.to_alpaca(legs))  # the document, rendered now
        made_now = original(state, order, nested=nested)
        for field in dataclasses.fields(BrokerOrder):
            if field.name not in {"legs", "raw"}:
                assert getattr(made_now, field.name) is getattr(order, field.name), field.name
        assert [leg.id for leg in made_now.legs] == (order.leg_ids if nested else [])
        made.append((made_now, eager))
        return made_now

    monkeypatch.setattr(PaperState, "broker_order", recording)
    yield made


def _session(broker: PaperBroker, clock: ManualClock) -> None:
    """Orders of every type and class, each then filled, moved, replaced or canceled."""
    for symbol, price in (("SPY", "100"), ("QQQ", "50"), ("IWM", "100")):
        broker.set_price(symbol, price)
    broker.submit_order(make_request("SPY", "buy", 10, client_order_id="market"))
    broker.submit_order(make_request("SPY", "buy", None, client_order_id="notional", notional=Decimal(250)))
    broker.submit_order(limit("SPY", "buy", 3, "95", "resting"))
    broker.submit_order(
        make_request(
            "SPY",
            "buy",
            2,
            client_order_id="ext",
            order_type=OrderType.LIMIT,
            limit_price=Decimal("90"),
            extended_hours=True,
        )
    )
    broker.submit_order(make_request("IWM", "buy", 10, client_order_id="iwm"))
    broker.submit_order(
        make_request(
            "IWM", "sell", 2, client_order_id="stop", order_type=OrderType.STOP, stop_price=Decimal(97)
        )
    )
    broker.submit_order(
        make_request(
            "IWM",
            "sell",
            2,
            client_order_id="stop-limit",
            order_type=OrderType.STOP_LIMIT,
            stop_price=Decimal(96),
            limit_price=Decimal("95.5"),
        )
    )
    broker.submit_order(
        make_request(
            "IWM",
            "sell",
            2,
            client_order_id="trail",
            order_type=OrderType.TRAILING_STOP,
            trail_percent=Decimal(5),
            time_in_force=TimeInForce.GTC,
        )
    )
    broker.submit_order(
        make_request(
            "IWM",
            "sell",
            3,
            client_order_id="oco",
            order_type=OrderType.LIMIT,
            order_class=OrderClass.OCO,
            take_profit_limit_price=Decimal(120),
            stop_loss_stop_price=Decimal(80),
            time_in_force=TimeInForce.GTC,
        )
    )
    broker.submit_order(
        make_request(
            "QQQ",
            "buy",
            4,
            client_order_id="bracket",
            order_type=OrderType.LIMIT,
            limit_price=Decimal(49),
            order_class=OrderClass.BRACKET,
            take_profit_limit_price=Decimal(55),
            stop_loss_stop_price=Decimal(45),
            stop_loss_limit_price=Decimal("44.5"),
            time_in_force=TimeInForce.GTC,
        )
    )
    broker.submit_order(
        make_request(
            "QQQ",
            "buy",
            1,
            client_order_id="oto",
            order_class=OrderClass.OTO,
            stop_loss_stop_price=Decimal(40),
            time_in_force=TimeInForce.GTC,
        )
    )
    clock.advance(1)
    broker.set_price("IWM", "110")  # the trailing stop follows
    clock.advance(1)
    broker.set_price("QQQ", "48")  # the bracket's entry fills: its take-profit leg wakes
    clock.advance(1)
    resting = broker.get_order_by_client_id("resting")
    assert resting is not None
    broker.replace_order(resting.id, ReplaceRequest(qty=Decimal(4), limit_price=Decimal("96")))
    clock.advance(1)
    ext = broker.get_order_by_client_id("ext")
    assert ext is not None
    broker.cancel_order(ext.id)
    clock.advance(1)
    broker.set_price("SPY", "95")  # the replacement fills
    broker.set_price("IWM", "95")  # the stops trigger
    broker.list_orders(status="all", nested=True)
    broker.list_orders(status="all", nested=False)
    broker.orders()


def _partial_fills(broker: PaperBroker, clock: ManualClock) -> None:
    broker.submit_order(make_request("SPY", "buy", 7, client_order_id="partial"))
    for _ in range(3):
        clock.advance(1)
        broker.step()


def test_a_raw_read_late_is_the_document_of_the_order_when_the_broker_order_was_made(seen: Seen) -> None:
    clock = ManualClock()
    _session(PaperBroker(clock=clock, cash=Decimal(10) ** 6), clock)
    _partial_fills(PaperBroker(clock=clock, cash=Decimal(10) ** 6, max_fill_qty=3), clock)
    assert len(seen) > 60
    kinds = {(o.order_type, o.order_class, o.status, bool(o.legs)) for o, _ in seen}
    assert len(kinds) > 15  # every type, class and many statuses, nested and flat
    for order, eager in seen:
        assert json.dumps(order.raw) == eager  # same keys in the same order, same values
        assert order.raw is order.raw  # rendered once, then kept


def test_a_nested_raw_holds_copies_of_its_legs_raws(seen: Seen) -> None:
    clock = ManualClock()
    _session(PaperBroker(clock=clock, cash=Decimal(10) ** 6), clock)
    nested = [o for o, _ in seen if o.legs]
    assert nested
    for order in nested:
        assert order.raw["legs"] == [leg.raw for leg in order.legs]
        shown = order.raw["legs"]
        assert isinstance(shown, list)
        shown[0]["status"] = "scribbled"
        assert order.legs[0].raw["status"] != "scribbled"


def test_a_deferred_raw_is_a_plain_raw_to_every_dataclass_tool() -> None:
    calls: list[int] = []

    def render(order: BrokerOrder, extra: str) -> dict[str, object]:
        calls.append(1)
        return {"id": order.id, "extra": extra}

    lazy = BrokerOrder("o1", "c1", "SPY", Side.BUY, OrderStatus.NEW, raw=DeferredRaw(render, "x"))
    plain = BrokerOrder("o1", "c1", "SPY", Side.BUY, OrderStatus.NEW)
    assert lazy == plain and hash(lazy) == hash(plain) and repr(lazy) == repr(plain)
    assert calls == []
    assert lazy.raw == {"id": "o1", "extra": "x"} and type(lazy.raw) is dict
    assert lazy.raw is lazy.raw and calls == [1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        lazy.raw = {}  # type: ignore[misc]
    later = BrokerOrder("o2", "c2", "SPY", Side.BUY, OrderStatus.NEW, raw=DeferredRaw(render, "y"))
    for twin in (copy.copy(later), copy.deepcopy(later), pickle.loads(pickle.dumps(later))):
        assert twin == later and twin.raw == {"id": "o2", "extra": "y"}
    moved = dataclasses.replace(later, status=OrderStatus.FILLED)
    assert moved.status is OrderStatus.FILLED and moved.raw == {"id": "o2", "extra": "y"}
    assert plain.raw == {} and plain.raw is not BrokerOrder("o", "c", "S", Side.BUY, OrderStatus.NEW).raw


def test_broker_order_takes_what_its_dataclass_init_took() -> None:
    fields = dataclasses.fields(BrokerOrder)
    params = list(inspect.signature(BrokerOrder).parameters.values())
    assert [p.name for p in params] == [f.name for f in fields]
    for param, field in zip(params, fields, strict=True):
        assert param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        if field.default is not dataclasses.MISSING:
            assert param.default is field.default
        elif field.default_factory is not dataclasses.MISSING:
            assert repr(param.default) == "<factory>"
        else:
            assert param.default is inspect.Parameter.empty
    with pytest.raises(TypeError):
        BrokerOrder("o1", "c1", "SPY", Side.BUY)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        BrokerOrder("o1", "c1", "SPY", Side.BUY, OrderStatus.NEW, colour="red")  # type: ignore[call-arg]
    built = BrokerOrder("o1", "c1", "SPY", Side.BUY, OrderStatus.NEW, qty=Decimal(3), raw={"a": 1})
    assert (built.qty, built.filled_qty, built.legs, built.raw) == (Decimal(3), Decimal(0), (), {"a": 1})
    assert built.order_type is OrderType.MARKET and built.time_in_force is TimeInForce.DAY


def _index_agrees(state: PaperState) -> None:
    open_now = [o.id for o in state.orders.values() if o.status not in TERMINAL]
    assert list(state.open_ids) == open_now
    by_symbol: dict[str, list[str]] = {}
    for order_id in open_now:
        by_symbol.setdefault(state.orders[order_id].symbol, []).append(order_id)
    assert {s: list(ids) for s, ids in state.open_by_symbol.items()} == by_symbol


def _random_step(broker: PaperBroker, rng: random.Random, n: int) -> None:
    symbol = rng.choice(["SPY", "QQQ", "IWM"])
    open_orders = broker.list_orders(status="open")
    action = rng.random()
    try:
        if action < 0.5:
            side = rng.choice(["buy", "sell"])
            price = str(rng.randint(95, 105))
            broker.submit_order(limit(symbol, side, rng.randint(1, 3), price, f"r{n}"))
        elif action < 0.65 and open_orders:
            broker.cancel_order(rng.choice(open_orders).id)
        elif action < 0.75 and open_orders:
            broker.replace_order(rng.choice(open_orders).id, ReplaceRequest(qty=Decimal(rng.randint(1, 3))))
        else:
            broker.set_price(symbol, str(rng.randint(94, 106)))
    except OrderRejected:
        pass


def test_the_open_order_index_agrees_with_the_orders_through_changes_and_restarts(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "paper.json"
    broker = PaperBroker(cash=Decimal(10) ** 6, allow_short=True, max_fill_qty=2, state_path=path)
    for symbol in ("SPY", "QQQ", "IWM"):
        broker.set_price(symbol, "100")
    for n in range(300):
        _random_step(broker, rng, n)
        _index_agrees(broker._venue.state)
    assert broker._venue.state.open_ids  # some orders still rest
    again = PaperBroker(cash=Decimal(10) ** 6, allow_short=True, state_path=path)  # journal replayed
    _index_agrees(again._venue.state)
    assert list(again._venue.state.open_ids) == list(broker._venue.state.open_ids)


def test_order_ids_are_version_4_uuids_never_repeated() -> None:
    ids = [new_uuid() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_never_hands_out_an_id_its_parent_drew_with_it() -> None:
    new_uuid()  # the parent now holds a batch of drawn ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id goes to the parent, then it leaves at once
        os.write(write, new_uuid().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent_ids = {new_uuid() for _ in range(300)}  # more than one batch: the inherited ones too
    assert uuid.UUID(child_id).version == 4 and child_id not in parent_ids
