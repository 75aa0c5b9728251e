"""One fault plan means the same error in process (`FaultyBroker`) as over HTTP (`AlpacaBroker`).

`FaultyBroker` raised its own classes (every `reject` an `OrderRejected`, every
`accept_then_error` an `OutcomeUnknown`), while `AlpacaBroker` classifies the same answer by
status and message (`errors_map.classify_response`). A guard test on the in-process double then
saw another error than the guard meets over HTTP or at Alpaca: a 429 or 401 became a definite
refusal (the claim REJECTED instead of NOT_SENT), and a 403 after the order was placed an
ambiguous answer (the guard looks the order up) where the adapter says "rejected". Audit 19.
Real parts: the paper broker, the paper server, alpaca-py's `TradingClient`, `AlpacaBroker`.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from alpaca.trading.client import TradingClient

from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.domain import OrderRequest, Side
from tradeguard.errors import BrokerError
from tradeguard.faults import FaultPlan, FaultyBroker
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import Broker
from tradeguard.testing import paper_server

FAULTS = [
    "{action: accept_then_error, status: 403, body: {code: 40310000, message: insufficient buying power}}",
    "{action: accept_then_error, status: 400}",
    "{action: accept_then_error, status: 502}",
    "{action: reject, status: 401, body: {code: 40110000, message: request is not authorized}}",
    "{action: reject, status: 429, body: rate limit exceeded}",
    "{action: reject, status: 408}",
    "{action: reject, status: 422, body: {code: 40010001, message: client_order_id must be unique}}",
    "{action: reject, status: 403, body: {code: 40310000, message: insufficient buying power}}",
    "{action: reject}",
    "{action: error, status: 503}",
]


def _outcome(broker: Broker) -> tuple[str, str | None, int | None]:
    try:
        broker.submit_order(OrderRequest("AAPL", Side.BUY, "parity-1", qty=Decimal(1)))
    except BrokerError as exc:
        kind = getattr(exc, "kind", None)
        return type(exc).__name__, None if kind is None else str(kind), exc.status_code
    return "placed", None, None


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_raises_in_process_what_the_alpaca_adapter_raises_over_http(fault: str) -> None:
    plan = FaultPlan.parse("faults: [{route: POST /v2/orders, " + fault[1:] + "]")
    prices = FixedPrices({"AAPL": "100"})
    in_process = _outcome(FaultyBroker(PaperBroker(prices=prices), plan))
    with paper_server(prices=prices, faults=plan) as server:
        over_http = _outcome(AlpacaBroker(TradingClient("k", "s", url_override=server.url)))
    assert in_process == over_http
