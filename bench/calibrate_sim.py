"""Fit the simulator's step-time model: H100 / Llama-3.1-8B from the GPU engine benchmark, or a real CPU server.

    .venv/bin/python bench/calibrate_sim.py                 # the H100 fit (below)
    .venv/bin/python bench/calibrate_sim.py --cpu-url URL   # time steps of a running `shoal serve` (SmolLM2, CPU)

CPU mode (also what bench/sim_vs_engine.py runs before and after its replay): over HTTP, as a client sees them,
  - decode steps at batch 1, 2, 3, 4, 8: that many streams of 16-token prompts start together and decode 32
    tokens; the median gap between tokens in the middle of the streams is the step;
  - prefill steps of 16, 32, 64, 120 prompt tokens (one step each under a 128-token budget): time to first token;
then shoal.sim.calibration.fit_cpu_step_model makes them the table of step time by tokens in the step.

Inputs (bench/results/engine_throughput_gpu.json, measured by `bench/engine_gpu.py` on an H100):
  - batch-1 decode: ms per token, streamed weight bytes and the copy bandwidth measured in that run;
  - the nano-vllm protocol run: 256 sequences (prompt and output lengths uniform in [100, 1024], seed 0), its
    wall seconds and step count.
Model: step = base + per_seq x sequences in the step + max(bytes / bandwidth, flops / 790 TFLOP/s).
  - base + per_seq = batch-1 ms/token - weights / bandwidth (one sequence, one step per token);
  - per_seq is then the value at which the simulator replays the 256-sequence protocol in the measured time.
Writes bench/results/sim_calibration.json; shoal/sim/calibration.py carries the numbers it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from shoal.sim.calibration import H100_LLAMA_3_1_8B, fit_cpu_step_model
from shoal.sim.engine_model import SimEngine, SimRequest

HERE = Path(__file__).resolve().parent


def protocol_lengths(num_seqs=256, lo=100, hi=1024, vocab=128256, seed=0):
    """The exact lengths bench/engine_throughput.py's make_workload draws (same RNG calls, same order)."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(num_seqs):
        n = rng.randint(lo, hi)
        for _ in range(n):
            rng.randrange(vocab)
        prompts.append(n)
    outputs = [rng.randint(lo, hi) for _ in range(num_seqs)]
    return prompts, outputs


def replay(cal, prompts, outputs, seqs=256, budget=8192):
    engine = SimEngine(cal, seqs, budget)
    for p, o in zip(prompts, outputs):
        engine.add(SimRequest(0.0, p, o))
    t, steps = 0.0, 0
    while (d := engine.begin_step()) is not None:
        t += d
        engine.end_step(t, d)
        steps += 1
    return t, steps


DECODE_BATCHES, PREFILL_LENGTHS = (1, 2, 3, 4, 8), (16, 32, 64, 120)
MODEL_NAME = "smollm2-135m-instruct"


async def stream_tokens(session, url: str, prompt_ids: list[int], max_tokens: int) -> dict:
    """Stream one completion; every chunk's arrival time and the completion tokens it brings (continuous usage:
    a token whose text is still empty, e.g. half a UTF-8 character, rides in the next chunk)."""
    body = {"model": MODEL_NAME, "prompt": prompt_ids, "max_tokens": max_tokens, "ignore_eos": True,
            "temperature": 0, "stream": True, "stream_options": {"continuous_usage_stats": True}}
    start = time.perf_counter()
    chunks: list[tuple[float, int]] = []
    seen = 0
    async with session.post(url + "/v1/completions", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"server answered {resp.status}: {await resp.text()}")
        async for raw in resp.content:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            now = time.perf_counter()
            usage = json.loads(line[5:]).get("usage") or {}
            tokens = usage.get("completion_tokens", seen)
            if tokens > seen:  # the finish chunk brings no token
                chunks.append((now, tokens - seen))
                seen = tokens
    return {"start": start, "chunks": chunks}


def token_gaps(chunks: list[tuple[float, int]]) -> list[float]:
    """Inter-token latencies: a chunk that brings k tokens after a gap g counts as k tokens g / k apart."""
    return [(b - a) / k for (a, _), (b, k) in zip(chunks, chunks[1:]) for _ in range(k)]


async def measure_cpu_steps(session, url: str, rng: random.Random, reps: int = 3) -> dict:
    def prompt(n):
        return [rng.randrange(100, 20000) for _ in range(n)]

    await stream_tokens(session, url, prompt(16), 4)  # warm-up
    decode = {}
    for b in DECODE_BATCHES:
        medians = []
        for _ in range(reps):
            runs = await asyncio.gather(*(stream_tokens(session, url, prompt(16), 32) for _ in range(b)))
            medians.append(statistics.median(g for r in runs for g in token_gaps(r["chunks"][4:-2])))
        decode[b] = statistics.median(medians)
    prefill = {}
    for n in PREFILL_LENGTHS:
        ttfts = []
        for _ in range(reps + 1):
            r = await stream_tokens(session, url, prompt(n), 1)
            ttfts.append(r["chunks"][0][0] - r["start"])
        prefill[n] = statistics.median(ttfts)
    return {"decode_step_s": decode, "prefill_ttft_s": prefill}


def fit_measured(meas: dict, kv_capacity_tokens: int, name: str):
    return fit_cpu_step_model(sorted((int(b), t) for b, t in meas["decode_step_s"].items()),
                              sorted((int(n), t) for n, t in meas["prefill_ttft_s"].items()), kv_capacity_tokens,
                              name)


def cpu_main(url: str) -> int:
    import aiohttp

    async def run():
        async with aiohttp.ClientSession() as session:
            return await measure_cpu_steps(session, url, random.Random(0))

    meas = asyncio.run(run())
    cal = fit_measured(meas, 16384, f"CPU server at {url}")
    print(json.dumps({"measured": meas, "step_table": cal.step_table}, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-url", help="time the steps of this running CPU `shoal serve` instead of the H100 fit")
    args = ap.parse_args()
    if args.cpu_url:
        return cpu_main(args.cpu_url)
    measured = json.loads((HERE / "results" / "engine_throughput_gpu.json").read_text())
    b1 = measured["llama-3.1-8b_batch1"]
    run = measured["llama-3.1-8b"]["shoal"]
    bandwidth = b1["copy_GBps"] * 1e9
    host_one = b1["ms_per_token"] / 1000 - b1["weight_bytes"] / bandwidth
    prompts, outputs = protocol_lengths()
    assert sum(outputs) == run["output_tokens"], "the workload does not match the benchmark's"
    kv = run["kv_cache_tokens"]
    base = replace(H100_LLAMA_3_1_8B, weight_bytes=b1["weight_bytes"], copy_bandwidth=bandwidth,
                   kv_capacity_tokens=kv)

    def model(per_seq):
        return replace(base, step_overhead_s=host_one - per_seq, step_overhead_per_seq_s=per_seq)

    lo, hi = 0.0, host_one
    for _ in range(40):
        mid = (lo + hi) / 2
        seconds, _ = replay(model(mid), prompts, outputs)
        lo, hi = (mid, hi) if seconds < run["seconds"] else (lo, mid)
    per_seq = (lo + hi) / 2
    seconds, steps = replay(model(per_seq), prompts, outputs)
    roofline_only, _ = replay(replace(base, step_overhead_s=0.0, step_overhead_per_seq_s=0.0), prompts, outputs)
    result = {
        "source": "bench/results/engine_throughput_gpu.json (H100 80GB HBM3, Shoal engine, Llama-3.1-8B shape)",
        "copy_bandwidth_Bps": bandwidth, "weight_bytes": b1["weight_bytes"], "matmul_rate_flops": base.matmul_rate,
        "step_overhead_s": host_one - per_seq, "step_overhead_per_seq_s": per_seq,
        "check_batch1_ms": 1000 * model(per_seq).step_seconds(0, 0, 1, 128),
        "measured_batch1_ms": b1["ms_per_token"],
        "protocol_seconds": {"measured": run["seconds"], "fitted_model": seconds, "roofline_only": roofline_only},
        "protocol_steps": {"measured": run["steps"], "fitted_model": steps},
        "kv_cache_tokens_in_benchmark": kv,
    }
    (HERE / "results" / "sim_calibration.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
