"""The adapter's transport policy on alpaca-py's `TradingClient`: no hidden retry, always a timeout.

alpaca-py retries every method, ``POST /v2/orders`` included, on 429 and 504 (a retried POST is a
second order), and sends requests without a timeout (a hung socket blocks forever). Neither is a
setting, so the policy reaches into the client's private ``_retry`` / ``_retry_codes`` /
``_retry_wait`` and its session; if alpaca-py renames them, `apply_transport_policy` fails with
`ConfigError` instead of silently keeping the retry (ALPACA.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from alpaca.trading.client import TradingClient

from tradeguard.config import Settings
from tradeguard.errors import ConfigError

__all__ = ["apply_transport_policy"]

# alpaca-py internals the transport policy depends on, with the type each must have.
_PRIVATE_ATTRIBUTES: tuple[tuple[str, type], ...] = (
    ("_retry", int),
    ("_retry_codes", list),
    ("_retry_wait", int),
    ("_session", requests.Session),
)


_TIMEOUT_POSITION = (
    6  # `timeout` in Session.request(method, url, params, data, headers, cookies, files, auth, timeout)
)


class _TimeoutRequest:
    """A session's `request` that adds a (connect, read) timeout when the caller passed none."""

    def __init__(self, request: Callable[..., requests.Response], timeout: tuple[float, float]) -> None:
        self.wrapped = request
        self.timeout = timeout

    def __call__(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if len(args) > _TIMEOUT_POSITION:
            if args[_TIMEOUT_POSITION] is None:
                args = (*args[:_TIMEOUT_POSITION], self.timeout, *args[_TIMEOUT_POSITION + 1 :])
        elif kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return self.wrapped(method, url, *args, **kwargs)


def apply_transport_policy(client: TradingClient, settings: Settings) -> None:
    """Turn off alpaca-py's hidden retry and give every request a timeout (module docstring)."""
    connect, read = settings.connect_timeout_secs, settings.request_timeout_secs
    if connect <= 0 or read <= 0:
        raise ConfigError(f"broker timeouts must be positive, got connect={connect} read={read}")
    for name, kind in _PRIVATE_ATTRIBUTES:
        if not isinstance(getattr(client, name, None), kind):
            raise ConfigError(
                f"alpaca-py's TradingClient has no {name} of type {kind.__name__} any more; "
                "tradeguard cannot turn off its hidden POST retry. Pin alpaca-py to a tested version."
            )
    client._retry = 0
    client._retry_codes = []
    client._retry_wait = 0
    # Any: the stubs declare `request` a method, and this replaces it per instance.
    session: Any = client._session
    current = session.request
    if isinstance(current, _TimeoutRequest):  # a second adapter on the same client: no nesting
        current = current.wrapped
    # An instance attribute shadows Session.request; alpaca-py calls self._session.request(...).
    session.request = _TimeoutRequest(current, (connect, read))
