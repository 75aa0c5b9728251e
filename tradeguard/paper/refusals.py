"""Alpaca's refusals as `OrderRejected`: the one place their bodies are built.

Imports nothing else of the paper venue, so every module of it (assets and wire included) can
refuse as Alpaca does.
"""

from __future__ import annotations

from typing import Any

from tradeguard.broker.alpaca.errors_map import reject_kind
from tradeguard.errors import OrderRejected

__all__ = ["rejection", "unprocessable"]


def rejection(status: int, code: int, message: str, **extra: str | list[str]) -> OrderRejected:
    """Build the `OrderRejected` that Alpaca's answer maps to, with Alpaca's body.

    Alpaca's server sorts the keys of bodies with extra fields (Go maps), so this does too.
    """
    body: dict[str, Any] = {"code": code, "message": message}
    if extra:
        body = dict(sorted({**body, **extra}.items()))
    return OrderRejected(message, kind=reject_kind(status, message), status_code=status, code=code, body=body)


def unprocessable(message: str, code: int = 40010001, **extra: str | list[str]) -> OrderRejected:
    """Return Alpaca's 422 refusal with `message`."""
    return rejection(422, code, message, **extra)
