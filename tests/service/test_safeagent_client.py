"""SafeAgent's own client (`safeagent_exec_guard.payment_client.PaymentClient`, 0.1.25) against
`tradeguard serve`, changed in nothing but its base URL.

The client wraps its calls in the x402 payment flow, which pays only when a server answers 402;
this server never does, so the wallet key is a throwaway that never signs anything. What a
SafeAgent user sees: PROCEED with a settlement token, PENDING on a retry, committed, then SKIP
with the stored result; `sweep()` sends no key at all, so it is refused (401), as SafeAgent's own
hardened server refuses it without its admin token.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.service.conftest import NewKey, Service

payment_client = pytest.importorskip(
    "safeagent_exec_guard.payment_client", reason="needs safeagent-exec-guard[payment] (x402, eth-account)"
)

_THROWAWAY_WALLET = "0x" + "11" * 32  # never used: no 402 is ever answered


async def _session(base_url: str, key: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with payment_client.PaymentClient(
        server_url=base_url, wallet_key=_THROWAWAY_WALLET, tenant_api_key=key
    ) as client:
        first = await client.claim("order-42", "payment.send")
        seen["first"] = first
        seen["retry"] = await client.claim("order-42", "payment.send")
        seen["settle"] = await client.settle(
            "order-42", {"paid": "9.99"}, settlement_token=first["settlement_token"]
        )
        seen["after"] = await client.claim(
            "order-42", "payment.send", settlement_token=first["settlement_token"]
        )
        seen["again"] = await client.settle(
            "order-42", {"paid": "0"}, settlement_token=first["settlement_token"]
        )
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await client.sweep()
        seen["sweep"] = refused.value.response.status_code
    return seen


def test_safeagents_client_works_by_changing_its_base_url(service: Service, new_key: NewKey) -> None:
    seen = asyncio.run(_session(service.base_url, new_key("safeagent-user")))
    assert seen["first"]["status"] == "PROCEED"
    assert seen["first"]["agent_id"] == "safeagent-user"
    assert seen["retry"] == {"status": "PENDING", "request_id": "order-42", "agent_id": "safeagent-user"}
    assert seen["settle"] == {"status": "committed", "request_id": "order-42"}
    assert seen["after"] == {
        "status": "SKIP", "request_id": "order-42", "agent_id": "safeagent-user",
        "existing": {"paid": "9.99"},
    }  # fmt: skip
    assert seen["again"] == {"status": "already_committed", "request_id": "order-42"}
    assert seen["sweep"] == 401
