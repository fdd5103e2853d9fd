"""Check the simulator's engine model against the real engine: `shoal serve` on CPU with SmolLM2-135M.

    .venv/bin/python bench/sim_vs_engine.py [--rate 0.2] [--seconds 120]

1. Calibrate: time single requests on the idle server (decode step at batch 1, one prefill step) and fit the
   simulator's step-time model (shoal.sim.calibration.EngineCalibration) to them.
2. Replay the same Poisson load (token-id prompts, forced output lengths) against the server over HTTP (streaming)
   while sampling its /metrics queue gauge, and through the simulator's SimEngine.
3. Compare TTFT and ITL percentiles and the mean queue. Writes bench/results/sim_vs_engine.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from shoal.sim.calibration import EngineCalibration
from shoal.sim.engine_model import SimEngine, SimRequest

HERE = Path(__file__).resolve().parent
SEQS, BUDGET, KV_TOKENS = 8, 128, 16384
# SmolLM2-135M: 30 layers, 9 query / 3 KV heads of 64, float32 on CPU
PARAMS, LAYERS, KV_HEADS, Q_HEADS, HEAD_DIM, BYTES = 134.5e6, 30, 3, 9, 64, 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def stream_one(session, url, prompt_ids, max_tokens) -> dict:
    start = time.perf_counter()
    times = []
    body = {"model": "smollm2-135m-instruct", "prompt": prompt_ids, "max_tokens": max_tokens, "ignore_eos": True, "stream": True,
            "temperature": 0}
    async with session.post(url + "/v1/completions", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"server answered {resp.status}: {await resp.text()}")
        async for raw in resp.content:
            line = raw.decode().strip()
            if line.startswith("data:") and line != "data: [DONE]":
                times.append(time.perf_counter())
    return {"start": start, "times": times}


async def calibrate(session, url, rng) -> dict:
    decode, prefill = [], []
    for _ in range(2):
        r = await stream_one(session, url, [rng.randrange(100, 20000) for _ in range(16)], 24)
        gaps = [b - a for a, b in zip(r["times"], r["times"][1:])]
        decode.append(statistics.median(gaps))
    for _ in range(2):
        r = await stream_one(session, url, [rng.randrange(100, 20000) for _ in range(BUDGET - 8)], 1)
        prefill.append(r["times"][0] - r["start"])
    return {"decode_step_s": statistics.median(decode), "prefill_step_s": statistics.median(prefill),
            "prefill_tokens": BUDGET - 8}


def fitted(cal_meas: dict) -> EngineCalibration:
    weight_bytes = PARAMS * BYTES
    n = cal_meas["prefill_tokens"]
    flops = 2 * PARAMS * n + 4 * LAYERS * Q_HEADS * HEAD_DIM * n * n / 2
    return EngineCalibration(
        name="CPU / SmolLM2-135M float32 (fitted to this run's idle-server timings)", params=PARAMS,
        weight_bytes=weight_bytes, kv_bytes_per_token=2 * LAYERS * KV_HEADS * HEAD_DIM * BYTES,
        attn_flops_per_token_per_ctx=4 * LAYERS * Q_HEADS * HEAD_DIM,
        copy_bandwidth=weight_bytes / cal_meas["decode_step_s"], matmul_rate=flops / cal_meas["prefill_step_s"],
        step_overhead_s=0.0, step_overhead_per_seq_s=0.0, kv_capacity_tokens=KV_TOKENS, pod_start_delay_s=0.0)


def workload(rate: float, seconds: float, seed: int) -> list[tuple[float, int, int]]:
    rng = random.Random(seed)
    out, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return out
        out.append((t, rng.randint(16, 112), rng.randint(8, 40)))


async def replay(url: str, load, seed: int) -> dict:
    rng = random.Random(seed)
    waiting_samples, running_samples = [], []
    done = asyncio.Event()

    async def sample(session):
        while not done.is_set():
            async with session.get(url + "/metrics") as resp:
                text = await resp.text()
            for line in text.splitlines():
                if line.startswith("shoal:num_requests_waiting{"):
                    waiting_samples.append(float(line.split()[-1]))
                if line.startswith("shoal:num_requests_running{"):
                    running_samples.append(float(line.split()[-1]))
            await asyncio.sleep(0.25)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        sampler = asyncio.create_task(sample(session))
        t0 = time.perf_counter()

        async def one(at, prompt_len, out_len):
            await asyncio.sleep(max(0.0, at - (time.perf_counter() - t0)))
            ids = [rng.randrange(100, 20000) for _ in range(prompt_len)]
            r = await stream_one(session, url, ids, out_len)
            return r

        results = await asyncio.gather(*(one(*item) for item in load))
        done.set()
        await sampler
    ttft = [r["times"][0] - r["start"] for r in results]
    itl = [b - a for r in results for a, b in zip(r["times"], r["times"][1:])]
    return {"ttft": ttft, "itl": itl, "waiting": waiting_samples, "running": running_samples}


def simulate(cal: EngineCalibration, load) -> dict:
    engine = SimEngine(cal, SEQS, BUDGET)
    reqs = [SimRequest(at, p, o) for at, p, o in load]
    itl, i, t = [], 0, 0.0
    waiting_area = running_area = 0.0
    while i < len(reqs) or not engine.idle:
        while i < len(reqs) and reqs[i].arrival <= t:
            engine.add(reqs[i])
            i += 1
        d = engine.begin_step()
        if d is None:
            t = reqs[i].arrival
            continue
        waiting_area += engine.num_waiting * d
        running_area += engine.num_running * d
        t += d
        res = engine.end_step(t, d)
        itl += [d] * res.decode_seqs
    return {"ttft": [r.first_token_time - r.arrival for r in reqs], "itl": itl,
            "mean_waiting": waiting_area / t, "mean_running": running_area / t}


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=0.2)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "sim_vs_engine.json"))
    ap.add_argument("--model", help="model folder (default: the prepared SmolLM2-135M-Instruct)")
    ap.add_argument("--load-format", default="safetensors", help="dummy: random weights (speed only)")
    args = ap.parse_args()

    if args.model:
        model = Path(args.model)
    else:
        from shoal.engine.model_prepare import prepare

        model = prepare("smollm2")
    port = free_port()
    log = open(Path(args.out).with_suffix(".server.log"), "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "shoal", "serve", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
         "--device", "cpu", "--dtype", "float32", "--max-num-seqs", str(SEQS), "--max-num-batched-tokens",
         str(BUDGET), "--kv-cache-tokens", str(KV_TOKENS), "--enable-prefix-caching", "false",
         "--load-format", args.load_format],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                import urllib.request
                with urllib.request.urlopen(url + "/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the server did not become ready; see {log.name}")
            time.sleep(0.5)

        async def calib():
            async with aiohttp.ClientSession() as s:
                return await calibrate(s, url, random.Random(args.seed))

        meas = asyncio.run(calib())
        cal = fitted(meas)
        load = workload(args.rate, args.seconds, args.seed)
        real = asyncio.run(replay(url, load, args.seed))
        after = asyncio.run(calib())  # again after the load: how much the shared machine drifted meanwhile
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    sim = simulate(cal, load)
    row = {}
    for name, key, q in (("ttft_p50_s", "ttft", 0.5), ("ttft_p95_s", "ttft", 0.95), ("itl_p50_s", "itl", 0.5),
                         ("itl_p95_s", "itl", 0.95)):
        row[name] = {"real": pct(real[key], q), "sim": pct(sim[key], q)}
    row["mean_waiting"] = {"real": statistics.mean(real["waiting"]), "sim": sim["mean_waiting"]}
    row["mean_running"] = {"real": statistics.mean(real["running"]), "sim": sim["mean_running"]}
    for v in row.values():
        v["sim_over_real"] = v["sim"] / v["real"] if v["real"] else None
    result = {"load_format": args.load_format, "server": f"shoal serve --device cpu --dtype float32 --max-num-seqs {SEQS} "
                        f"--max-num-batched-tokens {BUDGET} (SmolLM2-135M)",
              "load": {"rate": args.rate, "seconds": args.seconds, "requests": len(load),
                       "prompt_tokens": "uniform 16..112", "output_tokens": "uniform 8..40", "seed": args.seed},
              "calibration_measured": meas, "calibration_after_replay": after, "cpus": os.cpu_count(),
              "load_average_1m": os.getloadavg()[0], "comparison": row}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
