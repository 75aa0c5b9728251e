"""Audit 37: a claim service answer whose figures or order cannot be read is a `StoreError`.

The remote ledger turns an answer it cannot decode into a `StoreError` (the gateway sends
nothing), but a quantity of "NaN" or "Infinity" decoded as a Decimal without complaint and
raised `decimal.InvalidOperation` later, in the gateway's exit sizing; a claim whose order
payload names no order type raised `ValueError` when the gateway built the order. The bot got a
bare error from `exit` instead of the store error it handles. Figures are now read as finite
numbers and the claim's order is read with the answer: a bad one is a `StoreError`, nothing is
sold, and the exit goes out once the answers are sound again.

The real service over HTTP (`tests.native_kit`); the bad answer is made at the network edge,
in the remote ledger's HTTP transport, as in `test_service_native_gateway`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.gateway_kit import MAY21_PRICES
from tests.native_kit import NativeService, serve_native
from tradeguard.clock import ManualClock
from tradeguard.errors import StoreError
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.store import ClaimStore, RemoteClaimLedger
from tradeguard.testing import RecordingBroker

AGENT = "may21-bot"


@pytest.fixture
def served(store_url: str, clock: ManualClock) -> Iterator[tuple[NativeService, ClaimStore]]:
    with ClaimStore(store_url, clock=clock) as store, serve_native(store, store_url) as service:
        yield service, store


def _set(body: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    for step in path[:-1]:
        body = body[step]
    body[path[-1]] = value


@pytest.mark.parametrize(
    ("route", "path", "value"),
    [
        ("/v1/position", ("qty",), "NaN"),
        ("/v1/exits", ("outcome", "claim", "payload", "order_type"), "NaN"),
    ],
    ids=["held-nan", "no-order-type"],
)
def test_an_exit_answer_with_an_unreadable_figure_sells_nothing_and_the_exit_goes_out_later(
    served: tuple[NativeService, ClaimStore],
    clock: ManualClock,
    route: str,
    path: tuple[str, ...],
    value: object,
) -> None:
    service, store = served
    paper = RecordingBroker(PaperBroker(prices=MAY21_PRICES, clock=clock))
    gw = OrderGateway(paper, service.base_url, agent_id=AGENT, api_key=service.key(AGENT), clock=clock)
    assert isinstance(gw.store, RemoteClaimLedger)
    session = gw.store._session
    sent = session.request
    spoiled: list[str] = ["not yet"]  # the entry's answers are sound

    def spoiling_one_answer(method: str, url: str, **kwargs: object) -> requests.Response:
        answer = sent(method, url, **kwargs)  # type: ignore[arg-type]
        if url.split("?", maxsplit=1)[0].endswith(route) and answer.status_code == 200 and not spoiled:
            body = answer.json()
            _set(body, path, value)
            answer._content = json.dumps(body).encode()
            spoiled.append(url)
        return answer

    session.request = spoiling_one_answer  # type: ignore[method-assign]
    try:
        gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        clock.advance(gw.settings.position_settle_secs + 1)
        spoiled.clear()
        with pytest.raises(StoreError, match="not a claim service answer"):
            gw.exit("TQQQ", intent="10:01 stop")
        assert paper.asked(side="sell") == [], "nothing sold on an answer it could not read"
        clock.advance(store.settings.lease_secs + 1)
        retry = gw.exit("TQQQ", intent="10:01 stop")  # an exit claim recorded is looked up first
        for _ in range(3):  # grace periods and probes pass on the test's clock
            if retry.outcome is not Outcome.UNKNOWN:
                break
            clock.advance(store.settings.unknown_grace_secs + store.settings.unknown_probe_gap_secs + 1)
            retry = gw.exit("TQQQ", intent="10:01 stop")
    finally:
        gw.store.close()
    assert retry.outcome is Outcome.SUBMITTED
    assert [(o.symbol, o.qty) for o in paper.asked(side="sell")] == [("TQQQ", 10)]
    assert paper.get_position("TQQQ") is None and store.position(AGENT, "TQQQ").qty == 0
