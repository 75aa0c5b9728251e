"""A PostgreSQL connection that gives up on a server that stops answering.

libpq waits for an answer without end. TCP keepalives and `tcp_user_timeout` (store/engine.py)
end the wait only when the peer's kernel stops acknowledging: a server process that froze
(SIGSTOP, a VM paused, a disk that hangs every backend) or a proxy on the path that stopped
forwarding (a PgBouncer that hangs, a load balancer) keep acknowledging, and the bot hung inside
its claim, or right after its POST, for as long as that lasted. G5 asks for a clear error instead:
every wait of a store connection for the server is bounded (`Settings.pg_answer_timeout_secs`);
past it the connection is dropped (a late answer must never be read as the next statement's)
and the wait ends in the driver's `OperationalError`, which the store turns into `StoreError`
(nothing sent) or, after a POST, `UnrecordedOrder` (resolved by client_order_id later).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors

__all__ = ["AnswerBoundConnection"]

# psycopg's own wait error (private; an OperationalError): raised when `wait`'s timeout passes.
_WAIT_TIMEOUT: type[Exception] = getattr(errors, "_WaitTimeout", psycopg.OperationalError)


class AnswerBoundConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait for the server is bounded by `answer_timeout_secs`.

    Attributes:
        answer_timeout_secs: The longest wait for one answer, in seconds; None waits without end
            (schema migrations, whose index builds may take long on a big store, set it so).
    """

    answer_timeout_secs: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        """Consume `gen` as psycopg does, within the connection's bound unless `timeout` is given."""
        bound = self.answer_timeout_secs if timeout is None else timeout
        try:
            return super().wait(gen, interval, bound)
        except _WAIT_TIMEOUT as exc:
            if timeout is not None:
                raise  # psycopg's own bounded waits (a cancel) handle their timeout themselves
            # The request may be half sent or its answer half read: the connection cannot be
            # used again. Closed here, it reads as `closed` to every caller.
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"the PostgreSQL server did not answer within {bound:g} s (a server that froze or a "
                "network path that went silent); the connection was dropped"
            ) from exc
