"""schemathesis against the native routes' own OpenAPI, through real HTTP: no 5xx, answers as documented.

Valid and invalid requests generated from `/openapi.json` go to the routes served by uvicorn on
loopback over a SQLite file and over PostgreSQL (which refuses NUL in text), with an agent key,
an admin key, no key or a forged key. Every
answer must be below 500 and match its documented schema (errors included: `{"code",
"message"}`), and the service must still answer afterwards.
"""

from __future__ import annotations

from collections import Counter

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.native_kit import serve_native
from tradeguard.store import ClaimStore

schemathesis = pytest.importorskip("schemathesis")
pytestmark = pytest.mark.slow

_EXAMPLES = 400


def test_generated_requests_to_the_native_routes_never_get_a_5xx(store_url: str) -> None:
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    with ClaimStore(store_url) as store, serve_native(store, store_url) as service:
        agent, admin = service.key("fuzz-bot"), service.key("fuzz-ops", admin=True)
        schema = schemathesis.openapi.from_url(f"{service.base_url}/openapi.json")
        cases = st.one_of(
            schema.as_strategy(generation_mode=GenerationMode.POSITIVE),
            schema.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )
        credentials = st.sampled_from(
            [{"Authorization": f"Bearer {agent}"}, {"Authorization": f"Bearer {admin}"}, {},
             {"Authorization": f"Bearer {agent[:-2]}zz"}]
        )  # fmt: skip
        session = requests.Session()
        statuses: Counter[int] = Counter()

        @settings(
            max_examples=_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=cases, headers=credentials)
        def exchange(case: schemathesis.Case, headers: dict[str, str]) -> None:
            response = case.call(
                base_url=service.base_url, session=session, headers=dict(headers), timeout=30
            )
            statuses[response.status_code] += 1
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        exchange()
        assert sum(statuses.values()) >= _EXAMPLES // 2
        assert statuses[200] > 0  # the keys worked: generated requests reached the store
        assert session.get(
            f"{service.base_url}/v1/settings", headers={"Authorization": f"Bearer {agent}"}, timeout=30
        ).ok
        session.close()
