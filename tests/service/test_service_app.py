"""The app's parts in process: the rate limiter's arithmetic, CORS off by default, the 500 answer,
and the config file that carries `ServiceConfig` to uvicorn's workers."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import start_service
from tradeguard.config import Settings
from tradeguard.errors import ConfigError
from tradeguard.service.app import ServiceConfig, create_app
from tradeguard.service.limits import RateLimiter, retry_after
from tradeguard.service.server import _read_config, _write_config, is_loopback, serve


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    ticks = Ticks()
    limiter = RateLimiter(per_sec=2.0, burst=3, monotonic=ticks)
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)  # one token comes back in half a second
    assert limiter.take("other") == 0.0  # buckets are per name
    ticks.now += 0.5
    assert limiter.take("k") == 0.0
    assert limiter.take("k") > 0
    assert retry_after(0.01) == "1"
    assert retry_after(2.2) == "3"


def test_a_rate_of_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(per_sec=0, burst=1)
    assert all(limiter.take("k") == 0.0 for _ in range(100))


def test_forgotten_buckets_are_the_oldest() -> None:
    ticks = Ticks()
    limiter = RateLimiter(per_sec=0.001, burst=1, monotonic=ticks, max_buckets=2)
    limiter.take("a")
    limiter.take("b")
    limiter.take("c")  # "a" is forgotten: it starts full again
    assert limiter.take("a") == 0.0
    assert limiter.take("c") > 0


def test_cors_is_off_unless_origins_are_given(sqlite_url: str) -> None:
    preflight = {"Origin": "https://dash.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(ServiceConfig(store_url=sqlite_url))) as client:
        closed = client.options("/claim", headers=preflight)
    config = ServiceConfig(store_url=sqlite_url, cors_origins=("https://dash.example",))
    with TestClient(create_app(config)) as client:
        opened = client.options("/claim", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    assert opened.headers["access-control-allow-origin"] == "https://dash.example"


def test_an_unexpected_error_is_500_without_internals(sqlite_url: str) -> None:
    app = create_app(ServiceConfig(store_url=sqlite_url))

    def boom() -> None:
        raise ValueError("internal detail: /secret/path")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}


def test_the_openapi_document_has_the_routes_and_docs_can_be_off(sqlite_url: str) -> None:
    with TestClient(create_app(ServiceConfig(store_url=sqlite_url))) as client:
        paths = client.get("/openapi.json").json()["paths"]
        docs = client.get("/docs").status_code
    with TestClient(create_app(ServiceConfig(store_url=sqlite_url, docs=False))) as client:
        hidden = client.get("/openapi.json").status_code
    assert {"/claim", "/claim/test", "/settle/{request_id}", "/audit", "/sweep", "/health"} <= set(paths)
    assert (docs, hidden) == (200, 404)


def test_the_workers_config_file_carries_the_config_and_is_private(tmp_path: Path) -> None:
    config = ServiceConfig(
        store_url="postgresql+psycopg://u:pw@db/x",
        settings=Settings(lease_secs=7.0),
        cors_origins=("https://a",),
    )
    path = _write_config(config)
    try:
        assert path.stat().st_mode & 0o077 == 0  # the URL may hold a password
        assert _read_config(path) == config
    finally:
        path.unlink()


def test_loopback_hosts_and_bad_worker_counts() -> None:
    assert [is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2")] == [True] * 4
    assert [is_loopback(h) for h in ("0.0.0.0", "10.0.0.5", "example.com")] == [False] * 3
    with pytest.raises(ConfigError, match="workers"):
        serve(ServiceConfig(), workers=0)


def test_ctrl_c_stops_the_service_cleanly(sqlite_url: str, tmp_path: Path) -> None:
    service = start_service(sqlite_url, tmp_path)
    service.process.send_signal(signal.SIGINT)
    status = service.process.wait(timeout=60)
    log = service.log.read_text()
    assert status == 0, log
    assert "Application shutdown complete" in log
