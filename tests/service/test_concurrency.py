"""Many concurrent requests with fewer request threads than clients and, on SQLite, one
pooled connection: nothing may hold a connection while it waits for a thread."""

from __future__ import annotations

import asyncio

import anyio.to_thread
import httpx

from .helpers import Api


def test_concurrent_first_requests_do_not_starve_the_pool(api: Api) -> None:
    api.tree()
    tokens = [api.user(f"u{i}", ("alpha", "member")) for i in range(8)]  # all cache misses
    app = api.client.app

    async def run() -> list[int]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 2
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            body = {"project": "alpha", "gpus": 1, "command": ["true"]}
            calls = [client.post("/v1/jobs", json=body, headers=api.h(tokens[i % 8]))
                     for i in range(24)]
            calls += [client.get("/v1/jobs", headers=api.h(tokens[i % 8])) for i in range(8)]
            answers = await asyncio.wait_for(asyncio.gather(*calls), timeout=45)
        return [r.status_code for r in answers]

    codes = asyncio.run(run())
    assert codes == [201] * 24 + [200] * 8
