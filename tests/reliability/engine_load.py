"""Load-side faults against real `shoal serve` processes: streams aborted at random points, offered load far above
capacity, SIGTERM with streams in flight. Each campaign returns one reliability row (see bench/reliability_record.py);
the tests run them small, bench/reliability_engine.py at full size."""

from __future__ import annotations

import asyncio
import math
import random
import re
import time

import aiohttp
import engine_faults_harness as h

PROMPT = "Write a long story about a lighthouse keeper named {i}."


def _session(limit: int = 0) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600), connector=aiohttp.TCPConnector(limit=limit))


# -- aborted streams ---------------------------------------------------------------------------------------------
async def abort_streams(url: str, n: int, concurrency: int, rng: random.Random, max_tokens: int = 64) -> dict:
    """`n` streams that each hang up at a random point: before the headers, right after them, or after 1-8 text
    chunks. Returns counts of each kind and of streams that were not aborted as planned."""
    kinds = {"before_headers": 0, "after_headers": 0, "mid_stream": 0, "unexpected": 0}
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, http: aiohttp.ClientSession) -> None:
        point = rng.random()
        body = h.completion_body(PROMPT.format(i=i), max_tokens)
        async with gate:
            if point < 0.15:  # the client gives up while the request is still being read or queued
                kinds["before_headers"] += 1
                try:
                    await asyncio.wait_for(h.stream_completion(http, url, body), rng.uniform(0.0, 0.05))
                except (TimeoutError, asyncio.TimeoutError):
                    return
                kinds["unexpected"] += 1  # it finished within 50 ms: not an abort
                return
            hang_up = 0 if point < 0.3 else rng.randint(1, 8)
            kinds["after_headers" if hang_up == 0 else "mid_stream"] += 1
            result = await h.stream_completion(http, url, body, hang_up_after=hang_up)
            if result.status != 200 or result.error or result.finish_reason is not None:
                kinds["unexpected"] += 1

    async with _session() as http:
        await asyncio.gather(*(one(i, http) for i in range(n)))
    return kinds


async def abort_campaign(n: int, concurrency: int, rng: random.Random, server=None) -> dict:
    """Row: `n` aborted streams; afterwards KV usage, running and waiting must be back to 0, /health OK, no crash."""
    own = server is None
    ctx = h.engine_server("--max-num-seqs", str(concurrency)) if own else None
    server = ctx.__enter__() if own else server
    try:
        before = h.scrape(server.url)
        t0 = time.monotonic()
        kinds = await abort_streams(server.url, n, concurrency, rng)
        seconds = time.monotonic() - t0
        idle = h.wait_for(lambda: h.engine_idle(server.url), 60)
        after = h.scrape(server.url)
        health = h.exchange(server.url, "GET", "/health").status
        crashes = len(h.crash_lines(server.log()))
    finally:
        if own:
            ctx.__exit__(None, None, None)
    leaked = 0 if idle else 1
    return {
        "scenario": f"{n} streams aborted at random points ({concurrency} at a time)",
        "faults_injected": n, "survived": n - kinds["unexpected"] if idle and health == 200 else 0,
        "data_lost": leaked + crashes + (health != 200),
        "kv_cache_usage_after": after["shoal:kv_cache_usage_perc"],
        "running_after": after["shoal:num_requests_running"], "waiting_after": after["shoal:num_requests_waiting"],
        "aborts_counted_by_engine": int(h.aborted_count(after) - h.aborted_count(before)),
        "abort_points": kinds, "health_after": health, "crash_lines": crashes, "seconds": round(seconds, 1),
    }


# -- overload ----------------------------------------------------------------------------------------------------
async def closed_loop(url: str, clients: int, seconds: float, max_tokens: int) -> list[h.StreamResult]:
    """`clients` users each sending the next request when the last ends: the server's capacity at no queueing."""
    results: list[h.StreamResult] = []
    end = time.monotonic() + seconds

    async def user(u: int, http) -> None:
        i = 0
        while time.monotonic() < end:
            results.append(await h.stream_completion(http, url, h.completion_body(PROMPT.format(i=f"{u}-{i}"),
                                                                                 max_tokens)))
            i += 1

    async with _session() as http:
        await asyncio.gather(*(user(u, http) for u in range(clients)))
    return results


async def open_loop(url: str, rate: float, seconds: float, max_tokens: int, rng: random.Random,
                    on_tick=None) -> list[h.StreamResult]:
    """Poisson arrivals at `rate` per second for `seconds`, each a stream run to its end (or refused)."""
    tasks: list[asyncio.Task] = []
    async with _session() as http:
        t0 = time.monotonic()
        next_at, tick = t0, t0
        while next_at < t0 + seconds:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            i = len(tasks)
            tasks.append(asyncio.create_task(h.stream_completion(http, url, h.completion_body(
                PROMPT.format(i=f"o{i}"), max_tokens))))
            next_at += rng.expovariate(rate)
            if on_tick is not None and time.monotonic() - tick >= 0.5:
                tick = time.monotonic()
                on_tick()
        return list(await asyncio.gather(*tasks))


def slo_ttft_s(ttft_p95_1x: float, e2e_p95_1x: float, max_waiting: int, max_num_seqs: int) -> float:
    """The TTFT an admitted request should see at any load: a full waiting queue ahead of it drains in
    ceil(W/S) request lifetimes, then it starts as at 1x; 1.5x for the load generator sharing the cores."""
    return 1.5 * (ttft_p95_1x + math.ceil(max_waiting / max_num_seqs) * e2e_p95_1x)


async def overload_campaign(seconds: float, factor: float = 10.0, max_num_seqs: int = 8, max_waiting: int = 8,
                            calibrate_s: float = 20.0, max_tokens: int = 16) -> dict:
    """Measure capacity (closed loop at `max_num_seqs` clients), then offer `factor` times it: the excess gets 429
    with Retry-After, waiting never passes --max-waiting, RSS stays bounded, admitted requests meet the SLO."""
    with h.engine_server("--max-num-seqs", str(max_num_seqs), "--max-waiting", str(max_waiting)) as server:
        await closed_loop(server.url, max_num_seqs, 3.0, max_tokens)  # warm-up
        t0 = time.monotonic()
        single = await closed_loop(server.url, max_num_seqs, calibrate_s, max_tokens)
        capacity = sum(r.ok for r in single) / (time.monotonic() - t0)
        ttft_1x = h.percentile([r.ttft_s for r in single if r.ok], 95)
        e2e_1x = h.percentile([r.e2e_s for r in single if r.ok], 95)
        slo = slo_ttft_s(ttft_1x, e2e_1x, max_waiting, max_num_seqs)
        rss_before = h.rss_bytes(server.proc.pid)
        samples = {"rss": [rss_before], "waiting": [0.0], "running": [0.0]}

        def sample() -> None:
            samples["rss"].append(h.rss_bytes(server.proc.pid))
            m = h.scrape(server.url)
            samples["waiting"].append(m["shoal:num_requests_waiting"])
            samples["running"].append(m["shoal:num_requests_running"])

        results = await open_loop(server.url, factor * capacity, seconds, max_tokens, random.Random(10), sample)
        idle = h.wait_for(lambda: h.engine_idle(server.url), 60)
        rss_after = h.rss_bytes(server.proc.pid)
        crashes = len(h.crash_lines(server.log()))
    admitted = [r for r in results if r.status == 200]
    refused = [r for r in results if r.status == 429]
    failed_admitted = [r for r in admitted if not r.ok or r.completion_tokens != max_tokens]
    other = [r for r in results if r.status not in (200, 429)]
    ttft_10x = h.percentile([r.ttft_s for r in admitted if r.ok], 95)
    return {
        "scenario": f"{factor:g}x measured capacity for {seconds:g} s (--max-num-seqs {max_num_seqs}, "
                    f"--max-waiting {max_waiting})",
        "faults_injected": len(results), "survived": len(results) - len(failed_admitted) - len(other),
        "data_lost": len(failed_admitted) + len(other) + crashes + (0 if idle else 1),
        "capacity_rps": round(capacity, 2), "offered_rps": round(factor * capacity, 2),
        "admitted": len(admitted), "refused_429": len(refused),
        "refused_429_with_retry_after": sum(1 for r in refused if r.retry_after and int(r.retry_after) >= 1),
        "other_status": len(other), "failed_admitted": len(failed_admitted),
        "ttft_p95_1x_s": round(ttft_1x, 3), "e2e_p95_1x_s": round(e2e_1x, 3),
        "ttft_p95_admitted_s": None if ttft_10x is None else round(ttft_10x, 3), "slo_ttft_p95_s": round(slo, 3),
        "slo_met": ttft_10x is not None and ttft_10x <= slo,
        "max_waiting_seen": max(samples["waiting"]), "max_running_seen": max(samples["running"]),
        "rss_before_mib": round(rss_before / 2**20, 1), "rss_peak_mib": round(max(samples["rss"]) / 2**20, 1),
        "rss_after_mib": round(rss_after / 2**20, 1), "crash_lines": crashes,
        "_results": results,
    }


# -- SIGTERM drain -----------------------------------------------------------------------------------------------
async def sigterm_drain_campaign(streams: int, max_tokens: int = 48) -> dict:
    """`streams` streams in flight, then SIGTERM: every one completes in full, /ready turns 503, new requests are
    refused (503 while draining, connection refused once gone), the process exits 0 with no crash."""
    server = h.start_server("--max-num-seqs", str(streams), "--drain-timeout", "300")
    refused, accepted_late, ready_503 = 0, 0, False
    try:
        async with _session() as http:
            started = [asyncio.Event() for _ in range(streams)]
            tasks = [asyncio.create_task(h.stream_completion(
                http, server.url, h.completion_body(PROMPT.format(i=i), max_tokens), started=started[i]))
                for i in range(streams)]
            await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), 600)
            in_flight = sum(not t.done() for t in tasks)
            server.terminate()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 5 and not ready_503:
                async with http.get(server.url + "/ready") as r:
                    ready_503 = r.status == 503
            for i in range(5):
                try:
                    async with http.post(server.url + "/v1/completions",
                                         json=h.completion_body(f"late {i}", 4, stream=False)) as r:
                        refused += r.status == 503
                        accepted_late += r.status == 200
                except aiohttp.ClientConnectionError:
                    refused += 1
            results = await asyncio.gather(*tasks)
            drain_s = time.monotonic() - t0
        code = server.wait(120)
    finally:
        server.kill()
    crashes = len(h.crash_lines(server.log()))
    complete = [r for r in results if r.ok and r.finish_reason == "length" and r.completion_tokens == max_tokens]
    return {
        "scenario": f"SIGTERM with {streams} streams in flight",
        "faults_injected": in_flight, "survived": len(complete),
        "data_lost": len(results) - len(complete) + crashes + (code != 0),
        "in_flight_at_sigterm": in_flight, "completed_in_full": len(complete), "new_refused": refused,
        "new_accepted_while_draining": accepted_late, "ready_503_after_sigterm": ready_503,
        "drain_seconds": round(drain_s, 1), "exit_code": code, "crash_lines": crashes,
        "in_flight_logged": _logged_in_flight(server.log()),
    }


def _logged_in_flight(log: str) -> int | None:
    match = re.search(r"draining: (\d+) requests in flight", log)
    return int(match.group(1)) if match else None
