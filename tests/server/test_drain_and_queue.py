"""A small server of its own, in each engine layout: the bounded waiting queue answers 429 with Retry-After; SIGTERM
drains and exits 0."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import openai
import pytest
from serverkit import TINY, crash_lines, scrape, start_server, wait_for

MODEL = TINY


# both engine layouts; the child-process one also streams 4 tokens a chunk
LAYOUTS = {"in-process": ("--engine-process", "false"),
           "child-process": ("--engine-process", "true", "--stream-interval", "4")}


@pytest.fixture(scope="module", params=list(LAYOUTS))
def small_server(request, tiny_model_dir):
    proc = start_server(tiny_model_dir, "--served-model-name", TINY, "--max-num-seqs", "2", "--max-waiting", "2",
                        "--drain-timeout", "60", *LAYOUTS[request.param])
    proc.tokens_per_chunk = 4 if request.param == "child-process" else 1
    yield proc
    proc.kill()


async def stream_tokens(http: aiohttp.ClientSession, url: str, prompt: str, max_tokens: int,
                        started: asyncio.Event):
    """Stream one completion; set `started` at its first text chunk; return (text chunks, finish_reason, usage)."""
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    chunks, finish, usage = 0, None, None
    async with http.post(url + "/v1/completions", json=body) as response:
        assert response.status == 200
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if data.get("usage"):
                usage = data["usage"]
            for choice in data["choices"]:
                if choice["text"]:
                    chunks += 1
                    started.set()
                finish = choice["finish_reason"] or finish
    return chunks, finish, usage


async def test_full_waiting_queue_is_429_with_retry_after(small_server):
    client = openai.AsyncOpenAI(base_url=small_server.url + "/v1", api_key="unused", max_retries=0)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        started = [asyncio.Event() for _ in range(4)]
        tasks = [asyncio.create_task(stream_tokens(http, small_server.url, f"Long {i}", 400, started[i]))
                 for i in range(4)]  # 2 run, 2 wait
        await asyncio.wait_for(asyncio.gather(started[0].wait(), started[1].wait()), 60)
        deadline = time.monotonic() + 30
        while scrape(small_server.url)["shoal:num_requests_waiting"] < 2:
            assert time.monotonic() < deadline, "the two extra requests never showed as waiting"
            await asyncio.sleep(0.05)
        with pytest.raises(openai.RateLimitError) as info:
            await client.completions.create(model=MODEL, prompt="one too many", max_tokens=4)
        assert int(info.value.response.headers["Retry-After"]) >= 1
        assert info.value.body["code"] == "queue_full"
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert wait_for(lambda: scrape(small_server.url)["shoal:kv_cache_usage_perc"] == 0, 30)


async def test_sigterm_drains_in_flight_refuses_new_and_exits_0(small_server):
    url = small_server.url
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        started = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(stream_tokens(http, url, f"Drain {i}", 60, started[i])) for i in range(2)]
        await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), 60)
        small_server.terminate()
        t0 = time.monotonic()
        while (await http.get(url + "/ready")).status != 503:
            assert time.monotonic() - t0 < 2, "/ready still 200 two seconds after SIGTERM"
            await asyncio.sleep(0.01)
        refused = await http.post(url + "/v1/completions", json={"model": MODEL, "prompt": "late", "max_tokens": 2})
        assert refused.status == 503 and (await refused.json())["error"]["code"] == "unavailable"
        assert not all(t.done() for t in tasks), "the in-flight requests should still be running"
        results = await asyncio.gather(*tasks)
    for chunks, finish, usage in results:
        assert finish == "length" and usage["completion_tokens"] == 60
        assert 1 <= chunks <= 60 // small_server.tokens_per_chunk
    assert small_server.wait(60) == 0
    assert crash_lines(small_server.log()) == []
