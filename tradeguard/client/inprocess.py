"""alpaca-py's own calls without keys or a network: answered in process, or refused in one line.

A `GuardedTradingClient` given a broker (or a gateway) and no API keys sends its guarded orders
to that broker. Its other calls (`get_account`, `get_open_position`, `get_orders`, ...) are
alpaca-py's own HTTP requests, which need somewhere to go:

- over a `PaperBroker` (found under wrappers through their ``inner``), `PaperTransport` answers
  them from that same account through the paper server's routes (`PaperServer.respond`, the
  code that serves them over HTTP), with no socket: the bot reads the account it trades;
- over any other broker, `NoAlpaca` refuses them with a `ConfigError` naming what to pass.

Both are requests transports mounted on the client's session for `IN_PROCESS_URL`, a name
under ``.invalid`` (RFC 2606) that never resolves, so nothing can leak to the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from tradeguard.errors import ConfigError
from tradeguard.paper import PaperBroker
from tradeguard.paper.server import PaperServer

__all__ = ["IN_PROCESS_URL", "NO_KEY", "NoAlpaca", "PaperTransport", "mount", "paper_under"]

IN_PROCESS_URL = "http://paper.tradeguard.invalid"
NO_KEY = "tradeguard-no-key"  # alpaca-py refuses a client without credentials; these go nowhere
_MAX_WRAPPERS = 32  # a chain of wrappers longer than this is a cycle, not a broker


def paper_under(broker: object) -> PaperBroker | None:
    """Return the `PaperBroker` at the bottom of a chain of wrappers (``.inner``), or None."""
    for _ in range(_MAX_WRAPPERS):
        if isinstance(broker, PaperBroker):
            return broker
        broker = getattr(broker, "inner", None)
        if broker is None:
            return None
    return None


class PaperTransport(BaseAdapter):
    """A requests transport that answers Alpaca's REST routes from a `PaperBroker` in process."""

    def __init__(self, broker: PaperBroker) -> None:
        super().__init__()
        self._server = PaperServer(broker)  # never started: only its routing and answers are used

    def send(  # noqa: PLR0917 - requests' BaseAdapter.send signature
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Answer `request` as the paper server would, without a socket."""
        split = urlsplit(request.url or "")
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        body = request.body or b""
        data = body.encode() if isinstance(body, str) else body
        method = request.method or "GET"
        reply, _ = self._server.respond(method, unquote(split.path), query, data, authorized=True)
        if reply is None:  # only a fault plan hangs up, and this server has none
            raise requests.ConnectionError("the in-process paper account gave no answer", request=request)
        response = requests.Response()
        response.status_code = reply.status
        response._content = reply.body
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(dict(reply.headers))
        if reply.content_type:
            headers["Content-Type"] = reply.content_type
        response.headers = headers
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to release: no connection was opened."""


class NoAlpaca(BaseAdapter):
    """A requests transport that refuses every request: the client has no Alpaca account."""

    def send(  # noqa: PLR0917 - requests' BaseAdapter.send signature
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Raise: see the class docstring."""
        path = urlsplit(request.url or "").path
        raise ConfigError(
            f"{request.method} {path}: this GuardedTradingClient was given a broker and no API keys, "
            "so only its guarded calls (orders, closes, cancels, replaces) work; pass api_key and "
            "secret_key (and url_override) for alpaca-py's own calls, or give it a PaperBroker"
        )

    def close(self) -> None:
        """Nothing to release."""


def mount(session: requests.Session, broker: object) -> None:
    """Answer `session`'s requests to `IN_PROCESS_URL` from `broker`'s paper account, or refuse them."""
    paper = paper_under(broker)
    adapter: BaseAdapter = PaperTransport(paper) if paper is not None else NoAlpaca()
    session.mount(IN_PROCESS_URL, adapter)
