"""The engine's own host time per decode step, for two or more source trees in one process (A/B).

The model is stubbed out: `ModelRunner.launch` returns fixed tokens at once, so a step times exactly the
engine's bookkeeping (Scheduler.schedule, LLMEngine._launch / _resolve / _check_finish / _delta, and the
detokenizer when the model folder has a tokenizer.json). Each tree is imported afresh under `shoal`, and
repeats alternate between trees, so a shared noisy machine slows them alike; the minimum and quartile of
the repeats are printed per tree, the first tree being the peer the others are read against.

  git archive HEAD src | tar -x -C /tmp/base     # the baseline tree
  python3 bench/engine_host_ab.py --model-dir DIR --trees /tmp/base/src src --async
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import random
import statistics
import sys
import time
from pathlib import Path


class FakeTokens:
    """What ModelRunner.launch returns (PendingTokens' interface), already resolved."""

    _steps = itertools.count(1 << 40)

    def __init__(self, tokens: list[int]) -> None:
        self.step = next(FakeTokens._steps)
        self.tokens = None
        self._tokens = tokens

    def tolist(self) -> list[int]:
        return list(self._tokens)


def load_engine(tree: str, args):
    """Import `shoal` from `tree` (dropping any earlier import) and build an engine with a stubbed launch."""
    for name in [n for n in sys.modules if n == "shoal" or n.startswith("shoal.")]:
        del sys.modules[name]  # objects built from an earlier tree keep their own modules alive
    sys.path.insert(0, str(Path(tree).resolve()))
    try:
        engine_pkg = importlib.import_module("shoal.engine")
        llm = engine_pkg.LLM(args.model_dir, device="cpu", dtype="float32", load_format=args.load_format,
                             max_num_seqs=args.seqs,
                             max_model_len=args.prompt_tokens + args.steps + 64, async_scheduling=args.overlap)
    finally:
        sys.path.pop(0)
    engine = llm.engine
    pool = itertools.cycle(random.Random(1).choices(token_range(engine), k=4096))
    engine.runner.launch = lambda batch, generators, pending=None: FakeTokens(
        [next(pool) for e in batch if e.samples])
    step = engine.step_deltas if args.mode == "deltas" else lambda: engine.step(stream=args.mode == "stream")
    return engine, engine_pkg.SamplingParams, step


def token_range(engine) -> range:
    """Ordinary token ids of this vocabulary (above the special ones at its start)."""
    vocab = engine.model_config.vocab_size
    return range(min(1000, vocab // 2), min(20000, vocab))


def time_steady_steps(engine, params_cls, step, prompts, args, tag: str) -> float:
    """Microseconds per step over `args.steps` steps with every sequence decoding; then drains the engine."""
    params = params_cls(max_tokens=args.steps + 20, ignore_eos=True, temperature=0.0)
    for i, prompt in enumerate(prompts):
        engine.add_request(f"{tag}-{i}", prompt, params)
    for _ in range(5):  # past the prefill
        step()
    if len(engine.scheduler.running) != len(prompts):
        raise RuntimeError("not every sequence is decoding: raise the KV pool or lower --seqs")
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - t
    while engine.has_unfinished():
        step()
    return 1e6 * seconds / args.steps


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--load-format", default="safetensors", help="dummy: random weights (the model never runs)")
    ap.add_argument("--trees", nargs="+", required=True, help="src folders holding the shoal package; first = peer")
    ap.add_argument("--seqs", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50, help="timed steady decode steps per repeat")
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--async", dest="overlap", action="store_true", help="asynchronous scheduling, as on CUDA")
    ap.add_argument("--mode", default="deltas", choices=["deltas", "offline", "stream"],
                    help="step_deltas (the server's engine child), step(stream=False) (LLM.generate), step()")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    setups = [(tree, *load_engine(tree, args)) for tree in args.trees]
    rng = random.Random(0)
    ids = token_range(setups[0][1])
    prompts = [rng.choices(ids, k=args.prompt_tokens) for _ in range(args.seqs)]
    times: dict[str, list[float]] = {tree: [] for tree in args.trees}
    for r in range(args.repeats + 2):  # the first two warm up
        for tree, engine, params_cls, step in setups if r % 2 == 0 else setups[::-1]:
            us = time_steady_steps(engine, params_cls, step, prompts, args, f"r{r}")
            if r >= 2:
                times[tree].append(us)
    print(f"{args.seqs} sequences decoding, mode={args.mode}, async={args.overlap}: engine host us per step")
    result = {}
    peer = min(times[args.trees[0]])
    for tree, values in times.items():
        values.sort()
        result[tree] = {"min": values[0], "p25": values[len(values) // 4], "median": statistics.median(values)}
        print(f"  {tree:28s} min {values[0]:7.1f}  p25 {values[len(values) // 4]:7.1f}  "
              f"median {statistics.median(values):7.1f}  (min / peer's min {values[0] / peer:.2f})")
    if args.out:
        Path(args.out).write_text(json.dumps({"config": vars(args), "us_per_step": result}, indent=1))
    return result


if __name__ == "__main__":
    main()
