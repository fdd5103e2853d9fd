"""Check the simulator's engine model against the real engine: `shoal serve` on CPU with SmolLM2-135M.

    .venv/bin/python bench/sim_vs_engine.py [--seconds 150] [--keep 0.17] [--seed 0]

1. Start the server pinned to CPU 1 with one torch thread; this client pins itself to CPU 0, so neither steals
   the other's core (on the 2-core VM the client's streaming and the server's matmuls used to share both).
2. Calibrate (bench/calibrate_sim.py's CPU mode): time decode steps at batch 1-8 and prefill steps of 16-120
   tokens on the idle server: the step-time table by tokens in the step (shoal.sim.calibration.fit_cpu_step_model).
3. Replay a slice of the Azure conversation trace (thinned, lengths scaled down to what a CPU serves) against the
   server over HTTP (streaming, token counts from continuous usage), sampling its queue gauges every 0.25 s, and
   through the simulator's engine with the fitted model (shoal.sim.replay).
4. Calibrate again (how far the shared machine drifted), compare TTFT and ITL p50/p95 and the queue over time.
Writes bench/results/sim_vs_engine.json.
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
import urllib.request
from pathlib import Path

import aiohttp
from calibrate_sim import fit_measured, measure_cpu_steps, stream_tokens, token_gaps

from shoal.sim.calibration import (
    SMOLLM2_HEAD_DIM, SMOLLM2_KV_HEADS, SMOLLM2_LAYERS, SMOLLM2_PARAMS, SMOLLM2_Q_HEADS, EngineCalibration,
)
from shoal.sim.replay import replay_engine
from shoal.sim.trace import load_trace

HERE = Path(__file__).resolve().parent
DEFAULT_TRACE = HERE.parent.parent / "shared" / "traces" / "azure_llm_2023_conv.csv"
SEQS, BUDGET, KV_TOKENS = 4, 128, 16384
SAMPLE_S, BIN_S = 0.25, 10.0
SERVER_CPU, CLIENT_CPU = 1, 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trace_slice(path: str, start_s: float, seconds: float, keep: float, seed: int) -> list[tuple[float, int, int]]:
    """Requests of [start, start + seconds), each kept with probability `keep`; prompts / 10 (8..120 tokens) and
    outputs / 8 (4..40 tokens), so one CPU replica is loaded as an H100 is by the full trace."""
    rng = random.Random(seed)
    out = []
    for r in load_trace(path):
        if start_s <= r.time < start_s + seconds and rng.random() < keep:
            out.append((r.time - start_s, min(max(r.prompt_tokens // 10, 8), 120),
                        min(max(r.output_tokens // 8, 4), 40)))
    return out


async def replay(url: str, load, seed: int) -> dict:
    rng = random.Random(seed)
    samples: list[tuple[float, float, float]] = []  # (t, waiting, running)
    done = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as session:
        t0 = time.perf_counter()

        async def sample():
            while not done.is_set():
                at = time.perf_counter() - t0
                async with session.get(url + "/metrics") as resp:
                    text = await resp.text()
                gauges = {}
                for line in text.splitlines():
                    for name in ("waiting", "running"):
                        if line.startswith(f"shoal:num_requests_{name}{{"):
                            gauges[name] = float(line.split()[-1])
                samples.append((at, gauges["waiting"], gauges["running"]))
                await asyncio.sleep(max(0.0, SAMPLE_S * (len(samples)) - (time.perf_counter() - t0)))

        async def one(at, prompt_len, out_len):
            await asyncio.sleep(max(0.0, at - (time.perf_counter() - t0)))
            ids = [rng.randrange(100, 20000) for _ in range(prompt_len)]
            r = await stream_tokens(session, url, ids, out_len)
            r["sent_s"] = r["start"] - t0  # the simulator replays these: client lateness is not the model's error
            return r

        sampler = asyncio.create_task(sample())
        results = await asyncio.gather(*(one(*item) for item in load))
        done.set()
        await sampler
    return {
        "ttft": [r["chunks"][0][0] - r["start"] for r in results],
        "itl": [g for r in results for g in token_gaps(r["chunks"])],
        "itl_per_chunk": [b[0] - a[0] for r in results for a, b in zip(r["chunks"], r["chunks"][1:])],
        "multi_token_chunks": sum(1 for r in results for _, k in r["chunks"] if k > 1),
        "chunks": sum(len(r["chunks"]) for r in results),
        "sent": [(r["sent_s"], p, o) for r, (_, p, o) in zip(results, load)],
        "max_late_s": max(r["sent_s"] - at for r, (at, _, _) in zip(results, load)),
        "samples": samples,
    }


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def binned(times, values, bin_s, end):
    bins = [[] for _ in range(int(end // bin_s) + 1)]
    for t, v in zip(times, values):
        bins[min(int(t // bin_s), len(bins) - 1)].append(v)
    return [statistics.mean(b) if b else 0.0 for b in bins]


def compare(real: dict, sim) -> dict:
    row = {}
    for name, key, q in (("ttft_p50_s", "ttft", 0.5), ("ttft_p95_s", "ttft", 0.95), ("itl_p50_s", "itl", 0.5),
                         ("itl_p95_s", "itl", 0.95)):
        r, s = pct(real[key], q), pct(getattr(sim, key), q)
        row[name] = {"real": r, "sim": s, "error": s / r - 1}
    times = [t for t, _, _ in real["samples"]]
    for key, idx, series in (("waiting", 1, sim.waiting), ("running", 2, sim.running)):
        r = statistics.mean(v[idx] for v in real["samples"])
        s = statistics.mean(series)
        row[f"mean_{key}"] = {"real": r, "sim": s, "error": (s / r - 1) if r else None}
    end = times[-1]
    real_bins = binned(times, [v[1] for v in real["samples"]], BIN_S, end)
    sim_bins = binned(times, sim.waiting, BIN_S, end)
    mae = statistics.mean(abs(a - b) for a, b in zip(real_bins, sim_bins))
    row["waiting_10s_bins"] = {"real": real_bins, "sim": sim_bins, "mean_abs_error": mae,
                               "mae_over_mean": mae / max(statistics.mean(real_bins), 1e-9),
                               "correlation": statistics.correlation(real_bins, sim_bins)
                               if len(set(real_bins)) > 1 and len(set(sim_bins)) > 1 else None}
    return row


def roofline_fit(meas: dict) -> EngineCalibration:
    """The model this check used before (commit 0e76797), for the ablation: the batch-1 decode step as the weights
    pass, a 120-token prefill as the matmul rate, max(bytes, flops), and nothing per sequence."""
    weight_bytes = SMOLLM2_PARAMS * 4
    n = 120
    flops = 2 * SMOLLM2_PARAMS * n + 4 * SMOLLM2_LAYERS * SMOLLM2_Q_HEADS * SMOLLM2_HEAD_DIM * n * n / 2
    return EngineCalibration(
        name="roofline, batch-1 decode + one prefill (the earlier check)", params=SMOLLM2_PARAMS,
        weight_bytes=weight_bytes, kv_bytes_per_token=2 * SMOLLM2_LAYERS * SMOLLM2_KV_HEADS * SMOLLM2_HEAD_DIM * 4,
        attn_flops_per_token_per_ctx=4 * SMOLLM2_LAYERS * SMOLLM2_Q_HEADS * SMOLLM2_HEAD_DIM,
        copy_bandwidth=weight_bytes / meas["decode_step_s"][1], matmul_rate=flops / meas["prefill_ttft_s"][n],
        step_overhead_s=0.0, step_overhead_per_seq_s=0.0, kv_capacity_tokens=KV_TOKENS, pod_start_delay_s=0.0)


def plot_queue(path: Path, times, real: dict, sim) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    for ax, idx, series, name in ((axes[0], 1, sim.waiting, "waiting"), (axes[1], 2, sim.running, "running")):
        ax.step(times, [v[idx] for v in real["samples"]], where="post", label="real server", lw=1)
        ax.step(times, series, where="post", label="simulator", lw=1, alpha=0.8)
        ax.set_ylabel(f"num_requests_{name}")
    axes[0].legend(loc="upper right")
    axes[1].set_xlabel("seconds into the replay")
    fig.suptitle("SmolLM2-135M on one CPU core: the real server's queue gauges vs the simulator's (same load)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def start_server(model: Path, port: int, log) -> subprocess.Popen:
    env = dict(os.environ, SHOAL_CPU_THREADS="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "shoal", "serve", "--model", str(model), "--host", "127.0.0.1", "--port",
           str(port), "--device", "cpu", "--dtype", "float32", "--max-num-seqs", str(SEQS),
           "--max-num-batched-tokens", str(BUDGET), "--kv-cache-tokens", str(KV_TOKENS),
           "--enable-prefix-caching", "false"]
    server = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), *cmd], stdout=log, stderr=subprocess.STDOUT,
                              env=env)
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        if server.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the server did not become ready; see {log.name}")
        time.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=str(DEFAULT_TRACE))
    ap.add_argument("--start", type=float, default=600.0, help="trace second the slice starts at")
    ap.add_argument("--seconds", type=float, default=150.0)
    ap.add_argument("--keep", type=float, default=0.17, help="share of the slice's requests replayed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "sim_vs_engine.json"))
    args = ap.parse_args()

    from shoal.engine.model_prepare import prepare

    model = prepare("smollm2")
    os.sched_setaffinity(0, {CLIENT_CPU})
    load = trace_slice(args.trace, args.start, args.seconds, args.keep, args.seed)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    load_before = os.getloadavg()
    with open(Path(args.out).with_suffix(".server.log"), "w") as log:
        server = start_server(model, port, log)
        try:
            async def calibrate():
                async with aiohttp.ClientSession() as session:
                    return await measure_cpu_steps(session, url, random.Random(args.seed))

            before = asyncio.run(calibrate())
            real = asyncio.run(replay(url, load, args.seed))
            after = asyncio.run(calibrate())
        finally:
            server.terminate()
            server.wait(30)
    print(json.dumps({"calibration_before": before, "calibration_after": after}))
    name = "CPU 1 core / SmolLM2-135M float32 (fitted to this run's step timings, before the replay)"
    cal = fit_measured(before, KV_TOKENS, name)
    cal_after = fit_measured(after, KV_TOKENS, name.replace("before", "after"))
    times = [t for t, _, _ in real["samples"]]
    sent = sorted(real["sent"])
    sim = replay_engine(cal, sent, SEQS, BUDGET, times)
    sim_after = replay_engine(cal_after, sent, SEQS, BUDGET, times)
    sim_roofline = replay_engine(roofline_fit(before), sent, SEQS, BUDGET, times)
    fit, fit_after = {"step_table": cal.step_table}, {"step_table": cal_after.step_table}
    result = {
        "server": f"taskset -c {SERVER_CPU} shoal serve --device cpu --dtype float32 --max-num-seqs {SEQS} "
                  f"--max-num-batched-tokens {BUDGET} --kv-cache-tokens {KV_TOKENS} --enable-prefix-caching false "
                  "(SmolLM2-135M-Instruct, SHOAL_CPU_THREADS=1); client pinned to CPU 0",
        "load": {"trace": Path(args.trace).name, "start_s": args.start, "seconds": args.seconds, "keep": args.keep,
                 "seed": args.seed, "requests": len(load), "prompt_tokens": "trace / 10, 8..120",
                 "output_tokens": "trace / 8, 4..40"},
        "calibration_before": {"measured": before, "fit": fit},
        "calibration_after": {"measured": after, "fit": fit_after},
        "load_average_before": load_before, "load_average_after": os.getloadavg(), "cpus": os.cpu_count(),
        "client": {"max_late_s": real["max_late_s"], "chunks": real["chunks"],
                   "multi_token_chunks": real["multi_token_chunks"],
                   "itl_per_chunk_p50_s": pct(real["itl_per_chunk"], 0.5),
                   "itl_per_chunk_p95_s": pct(real["itl_per_chunk"], 0.95)},
        "comparison": compare(real, sim),
        "comparison_with_after_fit": {k: v for k, v in compare(real, sim_after).items()
                                      if k != "waiting_10s_bins"},
        "comparison_earlier_roofline_model": {k: v for k, v in compare(real, sim_roofline).items()
                                              if k != "waiting_10s_bins"},
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    plot_queue(Path(args.out).with_suffix(".png"), times, real, sim)
    summary = {k: v for k, v in result["comparison"].items() if k != "waiting_10s_bins"}
    print(json.dumps({"fit": fit, "fit_after": fit_after, "comparison": summary,
                      "waiting_bins": {k: v for k, v in result["comparison"]["waiting_10s_bins"].items()
                                       if k not in ("real", "sim")},
                      "client": result["client"], "load": [load_before, result["load_average_after"]]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
