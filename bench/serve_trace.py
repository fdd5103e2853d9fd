"""Replay a request trace against a Shoal (or any OpenAI-compatible) server and report latency and goodput.

Trace: CSV `TIMESTAMP,ContextTokens,GeneratedTokens` (e.g. ../shared/traces/azure_llm_2023_conv.csv). Each row
becomes one streaming /v1/completions request sent at its (rate-scaled) time, with a prompt of exactly
ContextTokens random token ids and exactly GeneratedTokens output tokens (max_tokens + ignore_eos).

    .venv/bin/python bench/serve_trace.py --url http://127.0.0.1:8000 \
        --trace ../shared/traces/azure_llm_2023_conv.csv --rate-scale 0.5 --max-requests 200

TTFT: send -> first text chunk. ITL: gaps between text chunks. A request meets the SLO when its TTFT and its
mean inter-token time (TPOT) are within the targets; goodput = such requests per second of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp


@dataclass(frozen=True)
class TraceRow:
    offset_s: float  # since the first row
    prompt_tokens: int
    output_tokens: int


@dataclass
class Result:
    offset_s: float
    prompt_tokens: int
    output_tokens: int
    status: int = 0
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    e2e_s: float | None = None
    completion_tokens: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None and self.ttft_s is not None

    @property
    def tpot_s(self) -> float | None:
        if not self.ok or self.completion_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.completion_tokens - 1)


def read_trace(path: Path, rate_scale: float = 1.0, max_context: int | None = None,
               max_output: int | None = None, start_s: float = 0.0, duration_s: float | None = None,
               max_requests: int | None = None) -> list[TraceRow]:
    """Rows as offsets from the first kept row, compressed by `rate_scale` (2 = twice the arrival rate)."""
    if rate_scale <= 0:
        raise ValueError(f"rate_scale must be > 0, got {rate_scale}")
    rows, t0 = [], None
    with open(path, newline="") as handle:
        for record in csv.DictReader(handle):
            ts = datetime.fromisoformat(record["TIMESTAMP"][:26]).timestamp()
            t0 = ts if t0 is None else t0
            offset = ts - t0
            if offset < start_s:
                continue
            if duration_s is not None and offset >= start_s + duration_s:
                break
            prompt = max(1, int(record["ContextTokens"]))
            output = max(1, int(record["GeneratedTokens"]))
            rows.append(TraceRow((offset - start_s) / rate_scale, min(prompt, max_context or prompt),
                                 min(output, max_output or output)))
            if max_requests is not None and len(rows) >= max_requests:
                break
    return rows


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "mean": statistics.fmean(ordered)}


def summarize(results: list[Result], wall_s: float, ttft_slo_s: float, itl_slo_s: float) -> dict:
    ok = [r for r in results if r.ok]
    good = [r for r in ok if r.ttft_s <= ttft_slo_s and (r.tpot_s is None or r.tpot_s <= itl_slo_s)]
    statuses: dict[str, int] = {}
    for r in results:
        key = str(r.status) if r.error is None else f"{r.status}:{r.error[:60]}"
        statuses[key] = statuses.get(key, 0) + 1
    ms = lambda d: {k: None if v is None else round(v * 1000, 2) for k, v in d.items()}  # noqa: E731
    return {
        "requests": len(results),
        "succeeded": len(ok),
        "statuses": statuses,
        "wall_s": round(wall_s, 3),
        "output_tokens": sum(r.completion_tokens for r in ok),
        "output_tokens_per_s": round(sum(r.completion_tokens for r in ok) / wall_s, 2) if wall_s else None,
        "ttft_ms": ms(percentiles([r.ttft_s for r in ok])),
        "itl_ms": ms(percentiles([g for r in ok for g in r.itl_s])),
        "tpot_ms": ms(percentiles([r.tpot_s for r in ok if r.tpot_s is not None])),
        "e2e_ms": ms(percentiles([r.e2e_s for r in ok])),
        "slo": {"ttft_ms": ttft_slo_s * 1000, "itl_ms": itl_slo_s * 1000},
        "slo_attainment": round(len(good) / len(results), 4) if results else None,
        "goodput_rps": round(len(good) / wall_s, 4) if wall_s else None,
    }


async def stream_completion(session: aiohttp.ClientSession, url: str, body: dict, result: Result) -> None:
    """POST a streaming completion and fill `result` with its timings and token count."""
    sent = time.perf_counter()
    last = None
    try:
        async with session.post(url + "/v1/completions", json=body) as response:
            result.status = response.status
            if response.status != 200:
                result.error = (await response.text())[:200]
                return
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:].strip()
                if payload == b"[DONE]":
                    break
                chunk = json.loads(payload)
                if chunk.get("usage"):
                    result.completion_tokens = chunk["usage"]["completion_tokens"]
                choice = chunk["choices"][0] if chunk["choices"] else None
                # a token may decode to no text yet (part of a character): its finish chunk still ends the wait
                if choice and (choice.get("text") or (last is None and choice.get("finish_reason"))):
                    now = time.perf_counter()
                    if last is None:
                        result.ttft_s = now - sent
                    else:
                        result.itl_s.append(now - last)
                    last = now
        result.e2e_s = time.perf_counter() - sent
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"


def completion_body(model: str, prompt_ids: list[int], output_tokens: int) -> dict:
    return {"model": model, "prompt": prompt_ids, "max_tokens": output_tokens, "ignore_eos": True,
            "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True}}


async def served_model(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url + "/v1/models") as response:
        response.raise_for_status()
        return (await response.json())["data"][0]["id"]


async def replay(url: str, rows: list[TraceRow], model: str | None, seed: int, token_range: tuple[int, int],
                 timeout_s: float) -> tuple[list[Result], float]:
    rng = random.Random(seed)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        model = model or await served_model(session, url)
        results = [Result(r.offset_s, r.prompt_tokens, r.output_tokens) for r in rows]
        start = time.perf_counter()

        async def fire(row: TraceRow, result: Result) -> None:
            await asyncio.sleep(max(0.0, start + row.offset_s - time.perf_counter()))
            prompt = [rng.randrange(*token_range) for _ in range(row.prompt_tokens)]
            await stream_completion(session, url, completion_body(model, prompt, row.output_tokens), result)

        await asyncio.gather(*(fire(row, result) for row, result in zip(rows, results)))
        return results, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--trace", type=Path, default=Path("../shared/traces/azure_llm_2023_conv.csv"))
    parser.add_argument("--model", default=None, help="served model name (default: asked from /v1/models)")
    parser.add_argument("--rate-scale", type=float, default=1.0, help="arrival-rate multiplier (time compression)")
    parser.add_argument("--start-s", type=float, default=0.0, help="skip this much of the trace")
    parser.add_argument("--duration-s", type=float, default=None, help="replay this much of the trace (trace time)")
    parser.add_argument("--max-requests", type=int, default=None)
    parser.add_argument("--max-context", type=int, default=None, help="clip prompt lengths (small models/CPU)")
    parser.add_argument("--max-output", type=int, default=None, help="clip output lengths")
    parser.add_argument("--ttft-slo-ms", type=float, default=500.0)
    parser.add_argument("--itl-slo-ms", type=float, default=50.0)
    parser.add_argument("--token-range", type=int, nargs=2, default=(1000, 10000),
                        help="random prompt token ids are drawn from [lo, hi)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/serving.json"))
    args = parser.parse_args()

    rows = read_trace(args.trace, args.rate_scale, args.max_context, args.max_output, args.start_s,
                      args.duration_s, args.max_requests)
    results, wall = asyncio.run(replay(args.url, rows, args.model, args.seed, tuple(args.token_range),
                                       args.timeout_s))
    summary = summarize(results, wall, args.ttft_slo_ms / 1000, args.itl_slo_ms / 1000)
    report = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "summary": summary, "requests": [asdict(r) | {"itl_s": None} for r in results]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(summary, indent=1))
    return 0 if summary["succeeded"] == summary["requests"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
