"""`fast_frozen_init`: the same values, signature, defaults and refusals as the dataclass `__init__`."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tradeguard.domain import (
    BrokerOrder,
    BrokerPosition,
    Claim,
    ClaimOutcome,
    ClaimState,
    Intent,
    Kind,
    LedgerPosition,
    OrderRequest,
    OrderSpec,
    ReplaceRequest,
    Side,
)
from tradeguard.domain.frozen import fast_frozen_init
from tradeguard.domain.ledger import ExitRoom, FillStep
from tradeguard.execution import OrderResult

FAST = [
    BrokerOrder, BrokerPosition, Claim, ClaimOutcome, ExitRoom, FillStep, Intent, LedgerPosition,
    OrderRequest, OrderResult, OrderSpec, ReplaceRequest,
]  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str = "b"
    c: list[int] = dataclasses.field(default_factory=list)
    d: int | None = dataclasses.field(default=None, init=False)
    e: int = dataclasses.field(default=0, init=False)


@fast_frozen_init
@dataclasses.dataclass(frozen=True, slots=True)
class Fast:
    a: int
    b: str = "b"
    c: list[int] = dataclasses.field(default_factory=list)
    d: int | None = dataclasses.field(default=None, init=False)
    e: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("a must not be negative")
        object.__setattr__(self, "e", self.a * 2)


def _values(obj: Any) -> list[Any]:
    return [getattr(obj, f.name) for f in dataclasses.fields(obj)]


@pytest.mark.parametrize("cls", FAST, ids=lambda c: c.__name__)
def test_the_signature_is_the_dataclass_one(cls: type[Any]) -> None:
    fields = [f for f in dataclasses.fields(cls) if f.init]
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params] == [f.name for f in fields]
    for param, field in zip(params, fields, strict=True):
        assert param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        if field.default is not dataclasses.MISSING:
            assert param.default is field.default
        elif field.default_factory is not dataclasses.MISSING:
            assert repr(param.default) == "<factory>"
        else:
            assert param.default is inspect.Parameter.empty


def test_values_defaults_factories_and_fields_outside_init_are_the_dataclass_ones() -> None:
    for args, kwargs in [((1,), {}), ((2, "x"), {}), ((3,), {"c": [4]}), ((), {"a": 5, "b": "y"})]:
        fast, plain = Fast(*args, **kwargs), Plain(*args, **kwargs)
        assert type(fast) is Fast
        assert _values(fast)[:4] == _values(plain)[:4]
        assert fast.e == fast.a * 2  # __post_init__ ran, after every field was written
    assert Fast(1).c is not Fast(1).c  # a fresh list from the factory each time
    with pytest.raises(ValueError, match="negative"):
        Fast(-1)
    with pytest.raises(TypeError):
        Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast(1, d=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast(1, "b", [], 4)  # type: ignore[call-arg]


def test_values_stay_frozen_and_work_with_every_dataclass_tool() -> None:
    fast = Fast(3, "z", [1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.a = 4  # type: ignore[misc]
    assert fast == Fast(3, "z", [1]) and fast != Fast(4, "z", [1])
    assert pickle.loads(pickle.dumps(fast)) == fast
    assert copy.copy(fast) == fast and copy.deepcopy(fast) == fast
    changed = dataclasses.replace(fast, a=5)
    assert (changed.a, changed.e, type(changed)) == (5, 10, Fast)
    assert repr(fast) == "Fast(a=3, b='z', c=[1], d=None, e=6)"


def test_a_claim_built_fast_is_the_claim_the_dataclass_init_builds() -> None:
    now = datetime(2026, 5, 21, 13, 30, tzinfo=UTC)
    args = (
        "k" * 64, "tg-k", "bot", Kind.ENTRY, "SPY", Side.BUY, "d1", {"qty": "1"}, ClaimState.PENDING,
        1, "owner", now, Decimal(1), None, Decimal(0), None, None, 1, "claimed", now, now,
    )  # fmt: skip
    claim = Claim(*args)
    assert type(claim) is Claim and list(_values(claim)[:21]) == list(args)
    assert claim.reject_kind is None and claim.spec.qty == Decimal(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        claim.epoch = 2  # type: ignore[misc]
    intent = Intent("bot", "exit", "BTCUSD", "sell", "d2")  # type: ignore[arg-type]
    assert (intent.symbol, intent.kind, intent.side) == ("BTC/USD", Kind.EXIT, Side.SELL)  # __post_init__


def test_a_subclass_instance_is_written_field_by_field() -> None:
    class Sub(Fast):
        __slots__ = ("extra",)

    sub = Sub(2)
    assert type(sub) is Sub and (sub.a, sub.b, sub.e) == (2, "b", 4)
