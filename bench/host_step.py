"""Where a decode step's host time goes, against the device time of the same step (issue 4's host-bound case).

Runs `LLM.generate` on issue 4's workload (64 requests x 128 random prompt tokens, forced output length) and
(1) times each host phase of every step with perf_counter wrappers on the engine's own methods (the wrappers add
about a microsecond a call), (2) traces a window of steps with torch.profiler and sums the device's kernel and copy
time per step. A step whose host time exceeds its device time is host-bound: the GPU idles for the difference.
Checks first (every request got its tokens), then prints a table.

  PYTHONPATH=src python3 bench/host_step.py --model-dir .carry/smollm2 --load-format dummy [--shape qwen3-0.6b]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


class PhaseTimer:
    """Seconds per named phase, accumulated by wrapping callables."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, fn):
        seconds, calls, clock = self.seconds, self.calls, time.perf_counter

        def timed(*args, **kwargs):
            t = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] += clock() - t
                calls[name] += 1

        return timed

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def instrument(llm, timer: PhaseTimer) -> None:
    """Wrap the step's phases on this engine's objects (and the detokenizer and sampler, which are module-level)."""
    import shoal.engine.detokenizer as detok
    import shoal.engine.model_runner as mr

    engine, runner = llm.engine, llm.engine.runner
    engine.scheduler.schedule = timer.wrap("schedule", engine.scheduler.schedule)
    runner._prepare = timer.wrap("prepare inputs", runner._prepare)
    if runner.graphs is not None:
        runner.graphs.run = timer.wrap("graph inputs + replay", runner.graphs.run)
    mr.sample_on_device = timer.wrap("logits sampling launch", mr.sample_on_device)
    detok.IncrementalDetokenizer.add = timer.wrap("detokenize", detok.IncrementalDetokenizer.add)
    mr.PendingTokens.tolist = timer.wrap("wait for tokens", mr.PendingTokens.tolist)
    # launch (all) - runner launch (all) - schedule = the engine's own bookkeeping around the launch
    runner.launch = timer.wrap("runner launch (all)", runner.launch)
    engine._launch = timer.wrap("launch (all)", engine._launch)
    engine._resolve = timer.wrap("resolve (all)", engine._resolve)
    engine._step = timer.wrap("step (all)", engine._step)


def device_ms_per_step(llm, prompts, params, steps: int) -> tuple[float, float]:
    """(device busy ms per step, host ms per step) over `steps` decode steps traced with torch.profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    engine = llm.engine
    for i, p in enumerate(prompts):
        engine.add_request(f"dev-{i}", p, params)
    for _ in range(64):  # past the prefill, into steady decoding
        engine.step(stream=False)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t = time.perf_counter()
        for _ in range(steps):
            engine.step(stream=False)
        torch.cuda.synchronize()
        host = time.perf_counter() - t
    busy_us = sum(e.device_time_total for e in prof.key_averages() if e.device_type.name == "CUDA"
                  and not e.key.startswith(("cudaGraphLaunch", "Memset")))
    # key_averages double-counts nothing for device events: each kernel/copy appears once
    while engine.has_unfinished():
        engine.step(stream=False)
    return busy_us / 1000 / steps, 1000 * host / steps


def graph_replay_ms(llm, batch: int, context: int, iters: int = 200) -> float | None:
    """Device wall ms of one decode step of `batch` sequences at `context` tokens: the captured graph, the logits
    and an argmax, launched back to back so the host never makes the device wait."""
    import torch

    runner = llm.engine.runner
    graphs = runner.graphs
    if graphs is None or batch not in graphs.graphs:
        return None
    blocks = -(-context // runner.block_size)
    _, positions, slot_mapping, context_lens, block_tables = graphs.static_inputs(batch)  # this graph's inputs
    with torch.inference_mode():  # the buffers were made under inference mode: only written to there
        table = torch.arange(batch * blocks, device=block_tables.device, dtype=torch.int32) % runner.num_blocks
        block_tables[:, :blocks] = table.view(batch, blocks)
        context_lens[:] = context
        slot_mapping[:] = -1  # write no KV
        positions[:] = context - 1

    def step():
        graphs.graphs[batch].replay()
        runner.model.logits(graphs.outputs[batch][:batch]).argmax(-1)

    with torch.inference_mode():
        for _ in range(20):
            step()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            step()
        end.record()
        torch.cuda.synchronize()
    return round(start.elapsed_time(end) / iters, 4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--shape", default=None, help="a model shape of bench/engine_throughput.py, with model-dir's tokenizer")
    ap.add_argument("--load-format", default="dummy")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--output-tokens", type=int, default=1024)
    ap.add_argument("--profile-steps", type=int, default=40)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()

    import torch

    from shoal.engine import LLM, SamplingParams

    model_dir = Path(args.model_dir)
    if args.shape:
        from serve_overhead import shaped_model_dir

        model_dir = shaped_model_dir(args.shape, model_dir, Path(tempfile.mkdtemp(prefix="shoal-shape-")))
    llm = LLM(model_dir, device=args.device, dtype=args.dtype, load_format=args.load_format,
              max_num_seqs=max(64, args.concurrency), max_model_len=args.prompt_tokens + args.output_tokens + 16)
    torch.set_num_threads(1)  # as the server's engine child steps
    rng = random.Random(0)
    vocab = llm.engine.model_config.vocab_size
    prompts = [[rng.randrange(1000, vocab) for _ in range(args.prompt_tokens)] for _ in range(args.concurrency)]
    params = SamplingParams(max_tokens=args.output_tokens, ignore_eos=True, temperature=0.0)

    def run() -> tuple[float, int]:
        box = {}

        def go():
            t, steps = time.perf_counter(), llm.engine.steps_total
            outs = llm.generate(prompts, params)
            box["r"] = (time.perf_counter() - t, llm.engine.steps_total - steps, outs)

        worker = threading.Thread(target=go)  # from a worker thread, as the server's engine child steps
        worker.start()
        worker.join()
        wall, steps, outs = box["r"]
        assert all(len(o.token_ids) == args.output_tokens for o in outs), "a request fell short of its tokens"
        return wall, steps

    run()  # warm-up: compiles every kernel variant
    plain = [run() for _ in range(2)]
    timer = PhaseTimer()
    instrument(llm, timer)
    wall, steps = run()
    phases, calls = dict(timer.seconds), dict(timer.calls)  # before the traced run below steps the engine again
    on_gpu = args.device.startswith("cuda")
    device_ms, traced_host_ms = device_ms_per_step(llm, prompts, params, args.profile_steps) if on_gpu else (0.0, 0.0)

    tokens = args.concurrency * args.output_tokens
    best_wall, best_steps = min(plain)
    rows = {name: 1000 * s / steps for name, s in sorted(phases.items(), key=lambda kv: -kv[1])}
    replay_ms = graph_replay_ms(llm, args.concurrency, args.prompt_tokens + args.output_tokens // 2) if on_gpu else None
    result = {
        "config": vars(args) | {"card": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                                "torch": torch.__version__},
        "uninstrumented": {"tok_s": [round(tokens / w, 1) for w, _ in plain], "ms_per_step": round(1000 * best_wall / best_steps, 3)},
        "instrumented": {"steps": steps, "ms_per_step": round(1000 * wall / steps, 3),
                         "phases_ms_per_step": {k: round(v, 4) for k, v in rows.items()},
                         "calls": calls},
        # the decode graph plus logits and greedy sampling replayed back to back: the device's wall time of a
        # decode step at the run's mean context, gaps between kernels included (the profiler's sum leaves them out)
        "device_replay_ms_per_step": replay_ms,
        "device_busy_ms_per_step": round(device_ms, 3),
        "profiled_host_ms_per_step": round(traced_host_ms, 3),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\n{args.shape or model_dir.name}: uninstrumented {statistics.median(result['uninstrumented']['tok_s'])} "
          f"tok/s, {result['uninstrumented']['ms_per_step']} ms/step; device busy {result['device_busy_ms_per_step']} "
          f"ms/step (torch.profiler over {args.profile_steps} decode steps); decode step replayed back to back "
          f"{replay_ms} ms")
    print("| phase | ms per step (instrumented run) |\n|---|---:|")
    for name, ms in rows.items():
        print(f"| {name} | {ms:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
