"""The claim service's FastAPI app: `create_app(ServiceConfig)`.

The app is a thin layer over the same store objects a bot uses in process: a `ClaimStore`
(`app.state.store`: claims, ledger, audit log), the `KeyRing` (`app.state.keys`) and the
SafeAgent-compatible `ActionStore` (`app.state.actions`), all opened on one database URL when
the app starts and closed when it stops. Errors are answered without fabricating anything and
without internals: a store failure is 503 (never a made-up PENDING or SKIP), a validation error
is 422 naming the fields but never echoing the body (it may hold secrets), anything unexpected
is 500 with a fixed text.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from tradeguard.config import DEFAULT_STORE_URL, Settings
from tradeguard.errors import ConfigError, StoreError
from tradeguard.service import native, safeagent
from tradeguard.service.actions import ActionStore
from tradeguard.service.auth import SAFEAGENT_KEY_HEADER
from tradeguard.service.keys import KeyRing
from tradeguard.service.limits import BodyLimit, RateLimiter
from tradeguard.store import ClaimStore

__all__ = ["ServiceConfig", "create_app"]

log = logging.getLogger("tradeguard.service")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Everything the service is configured with, passed explicitly (no global state).

    Attributes:
        store_url: The claim store's SQLAlchemy URL (keys and action claims live in it too).
        settings: The store's settings (lease, client_order_id prefix, busy timeout).
        max_body_bytes: Larger request bodies are refused with 413 before they are parsed.
        rate_per_sec: Requests per second each API key may sustain (0 turns the limit off).
        rate_burst: Requests a key may send at once after a quiet spell.
        cors_origins: Browser origins allowed to call the service; none (CORS off) by default.
        stale_pending_secs: `/sweep` reports action claims PENDING for longer than this.
        docs: Serve the OpenAPI document and its pages (`/openapi.json`, `/docs`).
    """

    store_url: str = DEFAULT_STORE_URL
    settings: Settings = field(default_factory=Settings)
    max_body_bytes: int = 64 * 1024
    rate_per_sec: float = 1000.0
    rate_burst: int = 2000
    cors_origins: tuple[str, ...] = ()
    stale_pending_secs: float = 300.0
    docs: bool = True

    def __post_init__(self) -> None:
        # A NaN or infinite rate passes `per_sec <= 0` and then disables the limit without a word
        # (found by an audit); 0 is the one way to say "no limit".
        if not (math.isfinite(self.rate_per_sec) and self.rate_per_sec >= 0):
            raise ConfigError(
                "rate_per_sec must be a finite number of requests per second (0: no limit), "
                f"got {self.rate_per_sec}"
            )


def create_app(config: ServiceConfig) -> FastAPI:
    """Return the claim service's app for `config`; the store opens when the app starts.

    Raises (at start-up):
        StoreError: The store cannot be opened or migrated.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = ClaimStore(config.store_url, settings=config.settings)
        try:
            # Read once, at start: every answer names the store it comes from (a remote ledger
            # refuses a service that now serves another store); one that cannot be named is refused.
            log.info("serving claim store %s (store id %s)", store, store.store_id)
            # The same settings as the claim store: all three share the database and its pooler.
            app.state.keys = KeyRing(store.url, settings=config.settings)
            app.state.actions = ActionStore(store.url, settings=config.settings)
            app.state.store = store
            yield
        finally:
            for name in ("actions", "keys"):
                opened = getattr(app.state, name, None)
                if opened is not None:
                    opened.close()
            store.close()

    app = FastAPI(
        title="tradeguard claim service",
        summary="At most one run per decision over HTTP: SafeAgent-compatible and native order claims.",
        version="1",
        lifespan=lifespan,
        openapi_url="/openapi.json" if config.docs else None,
        docs_url="/docs" if config.docs else None,
        redoc_url=None,
        # A path with a slash too many or too few is not a route: 404, never a 307 to another
        # URL built from the request's Host header (a client following it re-sends its key).
        redirect_slashes=False,
    )
    app.state.config = config
    app.state.limiter = RateLimiter(config.rate_per_sec, config.rate_burst)
    app.include_router(safeagent.router)
    app.include_router(native.router)
    _add_error_handlers(app)
    if config.cors_origins:
        headers = ["Authorization", "Content-Type", SAFEAGENT_KEY_HEADER, safeagent.SETTLEMENT_HEADER]
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=headers,
        )
    # Outermost: the size check runs before anything reads, parses or logs the body.
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> JSONResponse:
        # The message names the store without its password and the failure; never a request body.
        log.error("claim store failed on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": "claim store unavailable; nothing was decided, retry later"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer echoes the offending input: it can be a secret or a whole body.
        errors = [
            {
                "loc": list(error.get("loc", ())),
                "msg": str(error.get("msg", "")).removeprefix("Value error, "),  # our own checks' reasons
                "type": error.get("type", ""),
            }
            for error in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    # Starlette's class: FastAPI raises it for a body it cannot read, and its own subclasses it.
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        # A body nested deeper than Python's JSON reader goes is FastAPI's "error parsing the
        # body" (400); it is the same caller error as a settle result over its depth (422).
        if isinstance(exc.__cause__, RecursionError):
            error = {"loc": ["body"], "msg": "nested too deeply to read", "type": "json_invalid"}
            return JSONResponse({"detail": [error]}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)
