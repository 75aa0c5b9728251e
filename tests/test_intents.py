"""Intents, claim keys and client_order_ids: one stable name per decision."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.store_workers import subprocess_env
from tradeguard.domain import OrderType, PositionIntent, Side, TimeInForce
from tradeguard.domain.intents import (
    MAX_CLIENT_ORDER_ID_LEN,
    Intent,
    Kind,
    OrderSpec,
    canonical_json,
    derive_client_order_id,
    to_decimal,
)
from tradeguard.errors import ConfigError

EXAMPLE = Intent("momentum-bot", Kind.ENTRY, "TQQQ", Side.BUY, "2026-05-21T13:35 breakout")

intents = st.builds(
    Intent,
    agent_id=st.from_regex(r"[A-Za-z0-9_.:@-]{1,64}", fullmatch=True),
    kind=st.sampled_from(Kind),
    symbol=st.from_regex(r"[A-Z0-9][A-Z0-9./:-]{0,31}", fullmatch=True),
    side=st.sampled_from(Side),
    # Leave out what str.isprintable() rejects, and spaces (a blank name is refused).
    name=st.text(
        st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp", "Cf", "Co", "Cn", "Zs"]),
        min_size=1,
        max_size=200,
    ),
)


def test_the_key_of_a_known_intent_never_changes() -> None:
    # A changed derivation would give every open claim a new key after an upgrade: a retry
    # would no longer find its claim and would send a second order.
    assert EXAMPLE.canonical() == (
        '{"agent":"momentum-bot","intent":"2026-05-21T13:35 breakout","kind":"entry","side":"buy",'
        '"symbol":"TQQQ","v":1}'
    )
    assert EXAMPLE.key == "284bab08cb2e543ccaad5952bb1e401ddddae85d16b05d66311da79163b489f2"
    assert derive_client_order_id(EXAMPLE.key) == "tg-284bab08cb2e543ccaad5952bb1e401d"


def test_the_key_is_the_same_in_another_process() -> None:
    code = (
        "from tradeguard.domain import Intent, Kind, Side; "
        "print(Intent('momentum-bot', Kind.ENTRY, 'TQQQ', Side.BUY, '2026-05-21T13:35 breakout').key)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=subprocess_env() | {"PYTHONHASHSEED": "12345"})  # fmt: skip
    assert out.stdout.strip() == EXAMPLE.key


@given(intents)
def test_client_order_ids_are_short_ascii_and_deterministic(intent: Intent) -> None:
    again = Intent(intent.agent_id, intent.kind, intent.symbol, intent.side, intent.name)
    coid = derive_client_order_id(intent.key, "tgx")
    assert again.key == intent.key and derive_client_order_id(again.key, "tgx") == coid
    assert coid.isascii() and len(coid) <= MAX_CLIENT_ORDER_ID_LEN and coid.startswith("tgx-")


@given(intents, intents)
def test_different_decisions_get_different_ids(a: Intent, b: Intent) -> None:
    # An exit's side is not part of its decision (see test_an_exit_decision_is_the_same_...).
    def decision(i: Intent) -> tuple[object, ...]:
        return (i.agent_id, i.kind, i.symbol, None if i.kind is Kind.EXIT else i.side, i.name)

    if decision(a) != decision(b):
        assert derive_client_order_id(a.key) != derive_client_order_id(b.key)


@pytest.mark.parametrize("field", ["agent_id", "kind", "symbol", "side", "name"])
def test_each_part_of_the_intent_changes_the_key(field: str) -> None:
    other: dict[str, Any] = {
        "agent_id": "other-bot", "kind": Kind.EXIT, "symbol": "SQQQ", "side": Side.SELL, "name": "another",
    }  # fmt: skip
    assert replace(EXAMPLE, **{field: other[field]}).key != EXAMPLE.key


@pytest.mark.parametrize("six", [6, 6.0, "6", "6.00", Decimal("6.000"), Decimal("6E0")])
def test_payload_normalises_numbers(six: object) -> None:
    spec = OrderSpec(
        qty=to_decimal(six, "qty"), limit_price=to_decimal("6.50", "limit"), order_type=OrderType.LIMIT
    )
    reference = OrderSpec(qty=Decimal(6), limit_price=Decimal("6.5"), order_type=OrderType.LIMIT)
    assert spec.as_payload() == reference.as_payload()
    assert spec.as_payload()["qty"] == "6" and spec.as_payload()["limit_price"] == "6.5"
    assert spec.payload_hash() == reference.payload_hash()


def test_payload_differs_when_the_order_differs() -> None:
    base = OrderSpec(qty=Decimal(6))
    for other in (
        OrderSpec(qty=Decimal(7)),
        OrderSpec(notional=Decimal(6)),
        OrderSpec(qty=Decimal(6), time_in_force=TimeInForce.GTC),
        OrderSpec(qty=Decimal(6), position_intent=PositionIntent.SELL_TO_CLOSE),
        OrderSpec(qty=Decimal(6), extended_hours=True),
    ):
        assert other.payload_hash() != base.payload_hash()


def test_payload_round_trips() -> None:
    spec = OrderSpec(
        qty=Decimal("1.5"), order_type=OrderType.STOP_LIMIT, time_in_force=TimeInForce.GTC,
        limit_price=Decimal("10.25"), stop_price=Decimal(10), position_intent=PositionIntent.BUY_TO_OPEN,
        extended_hours=True,
    )  # fmt: skip
    assert OrderSpec.from_payload(spec.as_payload()) == spec


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"agent_id": "has space"}, "agent_id"),
        ({"agent_id": ""}, "agent_id"),
        ({"symbol": "qqq"}, "symbol"),
        ({"symbol": "Q" * 33}, "symbol"),
        ({"name": " "}, "non-empty"),
        ({"name": "x" * 201}, "at most 200"),
        ({"name": "bar\n1"}, "printable"),
    ],
)
def test_invalid_intents_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        replace(EXAMPLE, **kwargs)


@pytest.mark.parametrize("bad", [True, "abc", None, float("nan"), Decimal("Infinity")])
def test_to_decimal_refuses_non_numbers(bad: object) -> None:
    with pytest.raises(ConfigError, match="qty"):
        to_decimal(bad, "qty")


def test_to_decimal_reads_floats_as_written() -> None:
    assert to_decimal(0.1, "qty") == Decimal("0.1")


@given(intents)
def test_the_canonical_form_is_sorted_compact_ascii_json(intent: Intent) -> None:
    side = "close" if intent.kind is Kind.EXIT else intent.side.value
    as_json = {"agent": intent.agent_id, "intent": intent.name, "kind": intent.kind.value,
               "side": side, "symbol": intent.symbol, "v": 1}  # fmt: skip
    assert intent.canonical() == canonical_json(as_json)
    assert json.loads(intent.canonical()) == as_json


def test_an_exit_decision_is_the_same_whichever_side_it_closes() -> None:
    # A retry of an exit that arrives after the bot re-entered on the other side is a retry.
    sell = Intent("bot", Kind.EXIT, "TQQQ", Side.SELL, "2026-05-21 11:26 momentum lost")
    cover = Intent("bot", Kind.EXIT, "TQQQ", Side.BUY, "2026-05-21 11:26 momentum lost")
    assert sell.key == cover.key
    assert (
        Intent("bot", Kind.ENTRY, "TQQQ", Side.SELL, "x").key
        != Intent("bot", Kind.ENTRY, "TQQQ", Side.BUY, "x").key
    )
