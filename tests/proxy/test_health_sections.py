"""make_app's `health_sections`: a higher layer adds its own fields to `/_meterfox/health` (serve
adds the background sync's), read fresh at each request, never hiding the proxy's own."""

from __future__ import annotations

import aiohttp

from tests.conftest import start_proxy


async def test_each_section_is_read_at_each_request_and_never_hides_the_proxys_fields(
    upstream_server,
):
    fake, upstream = upstream_server
    calls = []

    def sync_section() -> dict:
        calls.append(1)
        return {"enabled": True, "runs": len(calls)}

    proxy, server = await start_proxy(
        fake,
        upstream,
        health_sections={"sync": sync_section, "status": lambda: "hidden?"},
    )
    try:
        async with aiohttp.ClientSession() as session:
            bodies = []
            for _ in range(2):
                async with session.get(proxy.url + "/_meterfox/health") as response:
                    assert response.status == 200
                    bodies.append(await response.json())
    finally:
        await server.close()
    assert [body["sync"] for body in bodies] == [
        {"enabled": True, "runs": 1},
        {"enabled": True, "runs": 2},
    ]
    assert {body["status"] for body in bodies} == {"ok"}
    assert "records_written" in bodies[0]
