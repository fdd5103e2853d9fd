"""Fit the simulator's H100 / Llama-3.1-8B step-time model to the GPU engine benchmark.

    .venv/bin/python bench/calibrate_sim.py

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

import json
import random
import sys
from dataclasses import replace
from pathlib import Path

from shoal.sim.calibration import H100_LLAMA_3_1_8B
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


def main() -> int:
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
