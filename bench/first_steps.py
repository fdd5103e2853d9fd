"""The first steps of a burst: why the server's first tokens came 50-100 ms after 64 requests arrived.

The engine child's trace (bench/serve_overhead.py --trace-dir) shows the first two steps of each HTTP run taking
20-60 ms each, against ~1.4 ms for a decode step. This replays that start on `LLMEngine` alone, in a worker thread
with one torch thread (as the child steps), and times each of the first steps by phase (bench/host_step.py's
wrappers), to tell apart what makes them slow:
- the arrival: one request and then 63 (as the HTTP parent hands them over) vs all 64 at once (as LLM.generate);
- the idle time before the burst: 0 s vs 5 s (the GPU lowers its clocks when idle; the HTTP run follows the
  client processes' 5 s start-up);
- the prompts: seen before (prefix-cache hits: 16 new tokens each, as in repeated benchmark runs) or new.
Each step's SM clock is read with torch.cuda.clock_rate (NVML) where available. Checks first (every request got
its tokens), then prints a table.

  PYTHONPATH=src python3 bench/first_steps.py --model-dir .carry/smollm2 --load-format dummy [--out F]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from host_step import PhaseTimer, instrument  # noqa: E402

PHASES = ("schedule", "prepare inputs", "runner launch (all)", "graph inputs + replay", "logits sampling launch",
          "wait for tokens", "detokenize", "step (all)")


def clock_mhz(torch) -> int | None:
    try:
        return int(torch.cuda.clock_rate())
    except Exception:  # no NVML here
        return None


def burst(llm, timer: PhaseTimer, prompts, params, arrival: str, idle_s: float, steps: int, torch) -> list[dict]:
    """Idle `idle_s`, then add the prompts (one, a step, the rest; or all), and time the first `steps` steps."""
    engine = llm.engine
    time.sleep(idle_s)
    rows = []
    base = f"b{time.monotonic_ns()}-"
    first, rest = (prompts[:1], prompts[1:]) if arrival == "1+63" else (prompts, [])
    for i, p in enumerate(first):
        engine.add_request(f"{base}{i}", p, params)
    for n in range(steps):
        if n == 1:
            for i, p in enumerate(rest, start=len(first)):
                engine.add_request(f"{base}{i}", p, params)
        timer.reset()
        clock = clock_mhz(torch)
        t = time.perf_counter()
        engine.step(stream=False)
        wall = time.perf_counter() - t
        stats = engine.last_step_stats
        rows.append({"step": n, "ms": round(1000 * wall, 3), "sm_mhz": clock,
                     "tokens": stats.num_prompt_tokens + stats.num_generation_tokens, "running": stats.num_running,
                     **{name: round(1000 * timer.seconds.get(name, 0.0), 3) for name in PHASES}})
    while engine.has_unfinished():
        engine.step(stream=False)
    return rows


COMPOSITIONS = [(0, 1), (0, 2), (0, 4), (0, 16), (0, 17), (0, 63), (0, 64), (1, 1), (1, 2), (1, 15), (1, 16),
                (1, 63), (2, 2), (4, 4), (15, 1), (16, 16), (17, 17), (32, 32), (49, 15), (60, 4), (63, 1)]


def scan(llm, rng, params) -> dict:
    """ms of the step in which `prompts` requests join `decodes` running ones, per composition, two passes."""
    engine = llm.engine
    times: dict[str, list[float]] = {}
    for _ in range(2):
        for decodes, prompts in COMPOSITIONS:
            tag = f"s{time.monotonic_ns()}-"
            for i in range(decodes):
                engine.add_request(f"{tag}d{i}", [rng.randrange(1000, 10000) for _ in range(128)], params)
            for _ in range(3 if decodes else 0):  # prefill, then decoding (asynchronous: one step behind)
                engine.step(stream=False)
            for i in range(prompts):
                engine.add_request(f"{tag}p{i}", [rng.randrange(1000, 10000) for _ in range(128)], params)
            t = time.perf_counter()
            engine.step(stream=False)
            times.setdefault(f"{decodes} decoding + {prompts} joining", []).append(round(1000 * (time.perf_counter() - t), 1))
            for rid in list(engine.requests):
                engine.abort(rid)
            while engine.has_unfinished() or engine._in_flight is not None:
                engine.step(stream=False)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--load-format", default="dummy")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--idle-s", type=float, default=5.0)
    ap.add_argument("--scan", action="store_true",
                    help="instead: time the first step of each batch composition (decodes running + prompts joining) "
                         "twice in one process; a first pass far slower than the second compiled something")
    ap.add_argument("--profile", default=None, help="also cProfile one warm prefill step of 64 new prompts; top "
                                                   "functions written here")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import torch

    from shoal.engine import LLM, SamplingParams

    built = time.perf_counter()
    llm = LLM(args.model_dir, device=args.device, dtype=args.dtype, load_format=args.load_format, max_num_seqs=64,
              kv_cache_tokens=32768)
    print(f"engine built (weights, graphs, warm-up) in {time.perf_counter() - built:.1f} s", flush=True)
    started = time.perf_counter()
    llm.engine.warm_up()  # again: on CUDA the engine ran it at start-up, compiling; this is what it costs then
    print(f"LLMEngine.warm_up, already compiled: {time.perf_counter() - started:.2f} s", flush=True)
    rng = random.Random(0)
    seen = [[rng.randrange(1000, 10000) for _ in range(128)] for _ in range(64)]
    params = SamplingParams(max_tokens=16, ignore_eos=True, temperature=0.0)
    timer = PhaseTimer()
    instrument(llm, timer)
    results: dict[str, list[dict]] = {}

    def run_all() -> None:
        torch.set_num_threads(1)  # as the server's engine child steps on CUDA
        if args.scan:
            results["scan"] = scan(llm, rng, SamplingParams(max_tokens=64, ignore_eos=True, temperature=0.0))
            return
        for arrival in ("1+63", "64"):  # warm-up: every shape compiled before anything is timed
            burst(llm, timer, seen, params, arrival, 0.0, args.steps, torch)
        if args.profile:
            import cProfile
            import io
            import pstats

            engine = llm.engine
            for i in range(64):
                engine.add_request(f"profiled-{i}", [rng.randrange(1000, 10000) for _ in range(128)], params)
            profile = cProfile.Profile()
            profile.enable()
            engine.step(stream=False)  # the prefill: launched, not waited for
            profile.disable()
            while engine.has_unfinished():
                engine.step(stream=False)
            text = io.StringIO()
            stats = pstats.Stats(profile, stream=text)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumtime").print_stats(40)
            Path(args.profile).write_text(text.getvalue())
        for repeat in range(2):
            for idle in (0.0, args.idle_s):
                for arrival in ("1+63", "64"):
                    for prompts_kind in ("seen", "new"):
                        prompts = seen if prompts_kind == "seen" else [
                            [rng.randrange(1000, 10000) for _ in range(128)] for _ in range(64)]
                        key = f"arrival {arrival}, idle {idle:g} s, prompts {prompts_kind}, repeat {repeat}"
                        results[key] = burst(llm, timer, prompts, params, arrival, idle, args.steps, torch)

    worker = threading.Thread(target=run_all)
    worker.start()
    worker.join()
    if args.scan:
        assert all(len(v) == 2 for v in results["scan"].values()), "a composition was not timed twice"
        print("\n| composition | first pass ms | second pass ms |\n|---|---:|---:|")
        for key, (first, second) in results["scan"].items():
            print(f"| {key} | {first} | {second} |")
        if args.out:
            Path(args.out).write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "scan": results["scan"]}))
        return 0
    assert results and all(len(rows) == args.steps for rows in results.values()), "a burst fell short of its steps"
    if args.out:
        gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else None
        Path(args.out).write_text(json.dumps({"gpu": gpu, "torch": torch.__version__,
                                              "results": results}, indent=1))
    print("\nms per step of the first steps after a burst (phases: schedule / prepare / runner launch / "
          "wait for tokens), SM MHz at the step's start")
    for key, rows in results.items():
        cells = [f"{r['ms']:.1f} ({r['schedule']:.1f}/{r['prepare inputs']:.1f}/{r['runner launch (all)']:.1f}/"
                 f"{r['wait for tokens']:.1f}) {r['sm_mhz']}" for r in rows]
        print(f"| {key} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
