"""PATCH /admin/runtime-config: bearer token, capacity bounds, and a lowered cap that holds under load."""

from __future__ import annotations

import asyncio

import aiohttp
from serverkit import ADMIN_TOKEN, MAX_NUM_SEQS, TINY, Reply, call, metric_values, scrape, wait_for

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def patch(server, body, headers=AUTH) -> Reply:
    return call("PATCH", server.url + "/admin/runtime-config", body, headers)


def test_token_required(server):
    assert call("GET", server.url + "/admin/runtime-config").status == 401
    wrong = patch(server, {"maxNumSeqs": 4}, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and wrong.json()["error"]["type"] == "authentication_error"
    got = call("GET", server.url + "/admin/runtime-config", headers=AUTH)
    assert got.status == 200
    assert got.json()["capacity"] == {"maxNumSeqs": MAX_NUM_SEQS, "maxNumBatchedTokens": 8192}


def test_out_of_capacity_is_422(server):
    for body in ({"maxNumSeqs": MAX_NUM_SEQS + 1}, {"maxNumSeqs": 0}, {"maxNumBatchedTokens": 10**9}):
        response = patch(server, body)
        assert response.status == 422, body
        assert response.json()["error"]["param"] == next(iter(body))
    assert patch(server, {"maxNumSeqs": "4"}).status == 400


async def test_lowered_cap_holds_under_load(server, aclient):
    before = scrape(server.url)
    assert before["shoal:runtime_max_num_seqs"] == MAX_NUM_SEQS
    response = patch(server, {"maxNumSeqs": 2})
    assert response.status == 200 and response.json()["maxNumSeqs"] == 2
    try:
        assert scrape(server.url)["shoal:runtime_max_num_seqs"] == 2
        requests = [asyncio.create_task(aclient.completions.create(
            model=TINY, prompt=f"Item {i}", max_tokens=12, extra_body={"ignore_eos": True}))
            for i in range(8)]
        running, waiting = [], []
        async with aiohttp.ClientSession() as http:
            while not all(r.done() for r in requests):
                async with http.get(server.url + "/metrics") as response:
                    parsed = metric_values(await response.text())
                running.append(parsed["shoal:num_requests_running"])
                waiting.append(parsed["shoal:num_requests_waiting"])
                await asyncio.sleep(0.02)
        results = await asyncio.gather(*requests)
        assert all(r.usage.completion_tokens == 12 for r in results)
        assert max(running) <= 2 and max(running) >= 1
        assert max(waiting) >= 1  # the cap was binding, not idle
    finally:
        assert patch(server, {"maxNumSeqs": MAX_NUM_SEQS}).status == 200
    assert wait_for(lambda: scrape(server.url)["shoal:runtime_max_num_seqs"] == MAX_NUM_SEQS, 5)
