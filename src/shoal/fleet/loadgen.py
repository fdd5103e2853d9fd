"""Replay arrivals against an OpenAI-compatible endpoint and record each request's latency, as a client sees it.

Prompts are random token ids of the trace's (scaled) length, outputs forced to the trace's (scaled) length with
`ignore_eos`, streamed so time to first token and the gaps between tokens are measured at the client.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import aiohttp

from shoal.fleet.trace import TraceRequest


@dataclass
class RequestRecord:
    sent_at: float  # seconds since the replay started
    prompt_tokens: int
    max_tokens: int
    first_token_at: float | None = None
    done_at: float | None = None
    output_tokens: int = 0
    token_gaps: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.done_at is not None

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.sent_at


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[rank]


def window_stats(records: list[RequestRecord], now: float, window_s: float) -> dict:
    """TTFT and ITL p95 over requests that finished in the last `window_s`, plus rates (for the view and the plot)."""
    recent = [r for r in records if r.done_at is not None and now - window_s <= r.done_at <= now]
    sent = sum(1 for r in records if now - window_s <= r.sent_at <= now)
    ttfts = [r.ttft for r in recent if r.ok and r.ttft is not None]
    gaps = [g for r in recent if r.ok for g in r.token_gaps]
    return {
        "sent_rps": sent / window_s,
        "done_rps": sum(r.ok for r in recent) / window_s,
        "failed": sum(not r.ok for r in recent),
        "ttft_p95_ms": None if not ttfts else 1000 * percentile(ttfts, 95),
        "itl_p95_ms": None if not gaps else 1000 * percentile(gaps, 95),
        "in_flight": sum(1 for r in records if r.done_at is None),
    }


class LoadGenerator:
    def __init__(self, base_url: str, model: str, requests: list[TraceRequest], seed: int = 0,
                 vocab_low: int = 100, vocab_high: int = 40000, timeout_s: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.requests = requests
        self.records: list[RequestRecord] = []
        self.started_at: float | None = None
        self._rng = random.Random(seed)
        self._vocab = (vocab_low, vocab_high)
        self._timeout = timeout_s

    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    async def run(self, stop: asyncio.Event | None = None) -> list[RequestRecord]:
        self.started_at = time.monotonic()
        tasks: list[asyncio.Task] = []
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self._timeout)) as s:
            for request in self.requests:
                delay = request.at_s - self.elapsed()
                if delay > 0:
                    if stop is not None:
                        try:
                            await asyncio.wait_for(stop.wait(), delay)
                        except asyncio.TimeoutError:
                            pass
                    else:
                        await asyncio.sleep(delay)
                if stop is not None and stop.is_set():
                    break
                tasks.append(asyncio.create_task(self.send(s, request.prompt_tokens, request.output_tokens)))
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        return self.records

    async def send(self, session: aiohttp.ClientSession, prompt_tokens: int, output_tokens: int) -> RequestRecord:
        record = RequestRecord(sent_at=self.elapsed(), prompt_tokens=prompt_tokens, max_tokens=output_tokens)
        self.records.append(record)
        body = {
            "model": self.model,
            "prompt": [self._rng.randint(*self._vocab) for _ in range(prompt_tokens)],
            "max_tokens": output_tokens,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
        }
        last = None
        try:
            async with session.post(f"{self.base_url}/v1/completions", json=body) as response:
                if response.status != 200:
                    record.error = f"HTTP {response.status}: {(await response.text())[:200]}"
                    return record
                async for line in response.content:
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        continue  # read to the end so the connection is released cleanly
                    chunk = json.loads(data)
                    if "error" in chunk:
                        record.error = str(chunk["error"])[:200]
                        return record
                    if not any(c.get("text") for c in chunk.get("choices") or []):
                        continue
                    now = self.elapsed()
                    if record.first_token_at is None:
                        record.first_token_at = now
                    elif last is not None:
                        record.token_gaps.append(now - last)
                    last = now
                    record.output_tokens += 1
            record.done_at = self.elapsed()
        except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError) as e:
            record.error = f"{type(e).__name__}: {e}"[:200]
        finally:
            if record.done_at is None:
                record.done_at = self.elapsed()
                record.error = record.error or "cancelled"
        return record
