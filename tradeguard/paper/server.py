"""The paper server: a PaperBroker behind Alpaca's REST routes, with an optional fault plan.

An unmodified alpaca-py `TradingClient(key, secret, url_override=server.url)`, or any Alpaca bot,
trades against it offline with any key. It listens on 127.0.0.1 unless told otherwise, logs every
request (logger ``tradeguard.paper_server``), and answers every request, however malformed, with
Alpaca's error body instead of failing: a handler error is a 500, never a dead server.

Faults change the answer (see `tradeguard.faults`): `accept_then_timeout` processes the
call and then holds the connection for `delay_secs` before closing it unanswered, so a client
with a read timeout times out while its order stands. Every stall ends at once on `stop()`.

`serve()` runs a server in the foreground until Ctrl-C or SIGTERM. Options and printing belong to
the `tradeguard paper-server` command (`tradeguard.cli`), not here.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from tradeguard.errors import BrokerError
from tradeguard.faults.plan import Fault, FaultAction, FaultInjector, FaultPlan, FiredFault
from tradeguard.paper.broker import PaperBroker
from tradeguard.paper.handlers import Query, Reply, body_fields, fault_reply, handler_for
from tradeguard.paper.refusals import rejection
from tradeguard.paper.routes import Route, route_for
from tradeguard.paper.wire import error_body

__all__ = ["PaperServer", "serve"]

logger = logging.getLogger("tradeguard.paper_server")

_MAX_BODY_BYTES = 1 << 20
_IDLE_TIMEOUT_SECS = 60.0  # an idle keep-alive connection is closed after this long


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as alpaca-py's requests session expects
    timeout = _IDLE_TIMEOUT_SECS
    # Headers and body leave in one segment: written apart, Nagle plus the client's delayed ACK
    # cost 40 ms per request.
    wbufsize = -1
    disable_nagle_algorithm = True
    server_version = "tradeguard-paper"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silence the stock access log; `_handle` logs each request once, with its fault."""

    def log_message(self, format: str, *args: Any) -> None:
        """Route the stdlib's own messages (bad request lines, timeouts) to logging."""
        logger.debug("%s: " + format, self.client_address[0], *args)

    def _handle(self) -> None:
        app = cast(_HTTPServer, self.server).app
        started = time.perf_counter()
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        body, reply, fault = self._read_body(), None, None
        if body is None:
            reply = app.error_reply(rejection(400, 40010000, "request body format is invalid"))
            self.close_connection = True  # the unread body would be taken for the next request
        else:
            authorized = bool(self.headers.get("APCA-API-KEY-ID") or self.headers.get("Authorization"))
            try:
                reply, fault = app.respond(self.command, path, query, body, authorized=authorized)
            except Exception:
                # respond() guards the handlers; this guards fault matching and routing too.
                logger.exception("paper server failed on %s %s", self.command, self.path)
                reply = app.error_reply(rejection(500, 50010000, "internal server error"))
        self._send(reply)
        status = reply.status if reply is not None else "no answer"
        note = f" [fault {fault.action}]" if fault is not None else ""
        millis = (time.perf_counter() - started) * 1000
        logger.info("%s %s -> %s in %.1f ms%s", self.command, self.path, status, millis, note)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            return None  # Alpaca's clients always send Content-Length; chunked is not supported
        length_text = self.headers.get("Content-Length", "0").strip()
        if not length_text.isdigit() or int(length_text) > _MAX_BODY_BYTES:
            return None
        return self.rfile.read(int(length_text)) if int(length_text) else b""

    def _send(self, reply: Reply | None) -> None:
        if reply is None:
            self.close_connection = True  # hang up without an answer, as a dropped link would
            return
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            # The client gave up (its timeout fired); nothing left to tell it.
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    # Joined on close, so stop() leaves no thread or socket behind.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], app: PaperServer) -> None:
        self.app = app
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a connection that failed mid-answer (the client went away) instead of printing it."""
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)

    def hang_up_all(self) -> None:
        """Wake every handler blocked reading an idle keep-alive connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                conn.shutdown(socket.SHUT_RDWR)


class PaperServer:
    """Serve a PaperBroker over Alpaca's REST routes in a background thread.

    Args:
        broker: The paper account to serve.
        host: Interface to listen on; loopback unless you mean to expose a fake broker.
        port: TCP port; 0 picks a free one (see `url`).
        fault_plan: Failures to inject, decided per request, deterministic under the plan's seed.

    Use as a context manager, or call `start()` and `stop()`.
    """

    def __init__(
        self,
        broker: PaperBroker,
        host: str = "127.0.0.1",
        port: int = 0,
        fault_plan: FaultPlan | None = None,
    ) -> None:
        self.broker = broker
        self.injector: FaultInjector | None = fault_plan.injector() if fault_plan else None
        self._address = (host, port)
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> PaperServer:
        """Bind and serve in a background thread; return self.

        Raises:
            OSError: The port is taken or the host is not local.
            RuntimeError: The server is already running.
        """
        if self._httpd is not None:
            raise RuntimeError("the paper server is already started")
        self._stopping.clear()
        self._httpd = _HTTPServer(self._address, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="paper-server"
        )
        self._thread.start()
        logger.info("paper server listening on %s", self.url)
        return self

    @property
    def url(self) -> str:
        """The base URL to give alpaca-py as `url_override`."""
        if self._httpd is None:
            raise RuntimeError("the paper server is not started")
        host, port = self._httpd.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://[{host_text}]:{port}" if ":" in host_text else f"http://{host_text}:{port}"

    def stop(self) -> None:
        """End every stall, close every connection and join every thread."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.hang_up_all()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = None

    def __enter__(self) -> PaperServer:
        return self if self._httpd is not None else self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def fired_faults(self) -> list[FiredFault]:
        """Return every fault the plan fired so far, in order ([] without a plan)."""
        return self.injector.fired() if self.injector is not None else []

    def error_reply(self, exc: BrokerError) -> Reply:
        """Return Alpaca's answer to a refusal (or to a change the broker could not keep: 500)."""
        return Reply(exc.status_code or 500, error_body(exc))

    def respond(
        self, method: str, path: str, query: Query, body: bytes, *, authorized: bool
    ) -> tuple[Reply | None, Fault | None]:
        """Answer one request; None means hang up without an answer. Never raises."""
        if not authorized:
            return self.error_reply(rejection(401, 40110000, "request is not authorized")), None
        route = route_for(f"{method} {path}")
        if route is None:
            return self.error_reply(rejection(404, 40410000, "endpoint not found")), None
        params = route.params(path)
        fault = None
        if self.injector is not None:
            fault = self.injector.check(method, path, {**body_fields(body), **query, **params})
        if fault is None:
            return self._dispatch(route, params, query, body), None
        return self._respond_with_fault(fault, route, params, query, body), fault

    def _respond_with_fault(
        self, fault: Fault, route: Route, params: Mapping[str, str], query: Query, body: bytes
    ) -> Reply | None:
        delay = fault.effective_delay_secs
        if fault.action is FaultAction.DELAY:
            # A stop during the delay hangs up rather than answering late.
            return None if self._stopping.wait(delay) else self._dispatch(route, params, query, body)
        if fault.action is FaultAction.DROP:
            return None
        if not fault.action.processes:
            return fault_reply(fault, time.time())
        self._dispatch(route, params, query, body)
        if fault.action is FaultAction.ACCEPT_THEN_TIMEOUT:
            self._stopping.wait(delay)
            return None
        return fault_reply(fault, time.time())

    def _dispatch(self, route: Route, params: Mapping[str, str], query: Query, body: bytes) -> Reply:
        try:
            return handler_for(route)(self.broker, params, query, body)
        except BrokerError as exc:
            # A refusal, or a state file that could not be written (the account was put back).
            return self.error_reply(exc)
        except Exception:
            # A bug must cost one request, never the server.
            logger.exception("paper server failed on %s", route.key)
            return self.error_reply(rejection(500, 50010000, "internal server error"))


def serve(server: PaperServer, *, on_ready: Callable[[PaperServer], None] | None = None) -> None:
    """Run a started `server` in the foreground until Ctrl-C or SIGTERM, then stop it.

    SIGTERM is caught only when called from the main thread (Python delivers signals there); the
    previous handler is put back afterwards.

    Args:
        server: The server to run; `start()` it first, so a bind error reaches the caller.
        on_ready: Called once the stop signals are handled, before waiting (e.g. to print the URL).
    """
    done = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        if on_ready is not None:
            on_ready(server)
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        try:
            server.stop()
            server.broker.close()  # a clean exit leaves the state file one fsynced snapshot
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
