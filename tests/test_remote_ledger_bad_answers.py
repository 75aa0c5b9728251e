"""A claim service URL answered by something else fails closed with a `StoreError` (G5).

Audit 14a D4: a load balancer's maintenance page, a captive portal or a proxy answering 200 made
`RemoteClaimLedger` raise `JSONDecodeError` or `KeyError` (and, after a send, the gateway passed
that on in place of `UnrecordedOrder`); a redirect turned a POST into a GET of another route.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from tradeguard.config import Settings
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.orders import Side
from tradeguard.errors import StoreError
from tradeguard.store import RemoteClaimLedger

_ANSWERS = {
    "html": (200, "text/html", b"<html>down for maintenance</html>"),
    "json": (200, "application/json", b'{"status": "ok"}'),
    "redirect": (301, "text/html", b""),
}


class _Impostor(http.server.BaseHTTPRequestHandler):
    mode = "html"

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        status, kind, body = _ANSWERS[self.server.mode]  # type: ignore[attr-defined]
        if self.path.startswith("/v1/settings"):
            status, kind, body = 200, "application/json", b"{}"
        self.send_response(status)
        if status == 301:
            self.send_header("location", "/v1/claims")
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=sorted(_ANSWERS))
def impostor(request: pytest.FixtureRequest) -> Iterator[RemoteClaimLedger]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Impostor)
    server.mode = request.param  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ledger = RemoteClaimLedger(f"http://127.0.0.1:{server.server_port}", api_key="tgk_test")
    yield ledger
    ledger.close()
    server.shutdown()
    server.server_close()


_CALLS: dict[str, Callable[[RemoteClaimLedger], object]] = {
    "claim": lambda led: led.claim(
        Intent("bot", Kind.ENTRY, "SPY", Side.BUY, "d1"), OrderSpec(qty=Decimal(1)), owner="o"
    ),
    "get": lambda led: led.get("k" * 64),
    "position": lambda led: led.position("bot", "SPY"),
}


@pytest.mark.parametrize("call", sorted(_CALLS))
def test_an_answer_that_is_not_the_claim_services_is_a_store_error(
    impostor: RemoteClaimLedger, call: str
) -> None:
    with pytest.raises(StoreError, match=r"claim service http://127\.0\.0\.1"):
        _CALLS[call](impostor)


def test_a_bad_argument_stays_the_callers_error() -> None:
    ledger = RemoteClaimLedger("http://127.0.0.1:9", api_key="tgk_test", settings=Settings())
    with pytest.raises(TypeError):
        ledger.get()  # type: ignore[call-arg]
