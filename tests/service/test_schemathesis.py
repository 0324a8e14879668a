"""Property-based fuzzing of the whole OpenAPI spec: no input may cause a 500, responses
match their documented schemas and status codes. Bounded in examples (about a minute
on both databases); runs as the admin so that every operation is reachable.

Schemathesis needs the schema at import time, but our app needs a database fixture, so
it is given a small ASGI app that forwards every call to the current test's app.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case

from gigafactory.service.app import create_app
from gigafactory.service.settings import Settings

from .helpers import Api

EXAMPLES = 8


class Delegate:
    """An ASGI app that forwards to ``target`` (swapped by the fixture per test)."""

    def __init__(self) -> None:
        self.target: Any = create_app(Settings(database_url="sqlite://"), run_loop=False)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


DELEGATE = Delegate()
# The log stream follows a running job for up to an hour by design; it has its own tests.
schema = schemathesis.openapi.from_asgi("/openapi.json", DELEGATE).exclude(
    path="/v1/jobs/{job_id}/logs/stream"
)


@pytest.fixture
def fuzz_target(api_populated: Api) -> Api:
    DELEGATE.target = api_populated.client.app
    return api_populated


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case: Case, fuzz_target: Api) -> None:
    # Business rules (unknown parent, project or accelerator; budget) legitimately turn
    # some schema-valid requests into 4xx answers, so "positive data acceptance" is off.
    case.call_and_validate(
        headers=fuzz_target.h(fuzz_target.admin),
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )
