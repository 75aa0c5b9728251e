"""A TCP proxy in front of the real PostgreSQL server that can go silent without closing anything.

What a frozen server process, a hung pooler or a load balancer that stopped forwarding look like
to a client: every socket stays open and acknowledged (so TCP keepalives and `tcp_user_timeout`
see a live peer), and no answer ever comes. `silent()` holds every byte from then on, in both
directions; `speak()` forwards again, the held bytes first (connections opened meanwhile are
accepted and held too, as a frozen server's kernel accepts them into its backlog).
"""

from __future__ import annotations

import selectors
import socket
import threading
from types import TracebackType

__all__ = ["SilentProxy"]


class SilentProxy:
    """Forward 127.0.0.1:`port` to `upstream` until told to go silent.

    Attributes:
        port: The port clients connect to.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._silent = threading.Event()
        self._held: list[tuple[socket.socket, bytes]] = []
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, name="silent-proxy", daemon=True)

    def __enter__(self) -> SilentProxy:
        self._thread.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in [*self._sockets, self._listener]:
            sock.close()
        self._selector.close()

    def silent(self) -> None:
        """Hold every byte from now on, both ways; sockets stay open."""
        self._silent.set()

    def speak(self) -> None:
        """Forward again, the bytes held meanwhile first."""
        self._silent.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._silent.is_set() and self._held:
                held, self._held = self._held, []
                for target, data in held:
                    self._send(target, data)
            for key, _events in self._selector.select(timeout=0.02):
                if key.data is None:
                    self._accept()
                    continue
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                target: socket.socket = key.data
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                if not data:  # one side closed: so does the other, as a real proxy's would
                    for sock in (source, target):
                        if sock.fileno() != -1:
                            self._selector.unregister(sock)
                            sock.close()
                    continue
                if self._silent.is_set():
                    self._held.append((target, data))
                else:
                    self._send(target, data)

    def _send(self, target: socket.socket, data: bytes) -> None:
        # The other side may have closed meanwhile (a client that gave up): its bytes go nowhere.
        if target.fileno() == -1:
            return
        try:
            target.sendall(data)
        except OSError:
            self._selector.unregister(target)
            target.close()

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        server = socket.create_connection(self._upstream)
        self._sockets += [client, server]
        self._selector.register(client, selectors.EVENT_READ, server)
        self._selector.register(server, selectors.EVENT_READ, client)
