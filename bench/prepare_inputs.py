"""Host time of one decode step's input preparation (`ModelRunner._prepare`), without a model or a GPU.

A synthetic pure-decode batch (N sequences, each C tokens into its context, block size 16) goes through the
runner's `_prepare` many times; the figure is the best of several repeats, in microseconds per step, with the
garbage collector on (as in the engine). Where the runner has CUDA-graph staging (DecodeGraphs with
capture=False on CPU), it is timed too: `_prepare` for the graph's layout, and that plus `DecodeGraphs.load`
(the copies into the static buffers). Runs against whatever `shoal` is on PYTHONPATH, so two source trees
can be compared in one shell:

  PYTHONPATH=src python3 bench/prepare_inputs.py [--seqs 64 --context 1024 --repeats 7]
"""

from __future__ import annotations

import argparse
import random
import time


def make_batch(num: int, context: int, block_size: int):
    from shoal.engine.outputs import RequestMetrics
    from shoal.engine.sampling_params import SamplingParams
    from shoal.engine.scheduler import ScheduledSeq
    from shoal.engine.sequence import Sequence

    rng = random.Random(0)
    batch, next_block = [], 0
    prompt_len = min(128, context - 1)
    for i in range(num):
        seq = Sequence(str(i), [rng.randrange(1000) for _ in range(prompt_len)], SamplingParams(temperature=0.0),
                       RequestMetrics(0.0))
        seq.output_token_ids = [rng.randrange(1000) for _ in range(context - prompt_len)]
        seq.num_computed_tokens = context - 1
        blocks = -(-context // block_size)
        seq.block_table = list(range(next_block, next_block + blocks))
        next_block += blocks
        try:
            batch.append(ScheduledSeq(seq, 1))
        except TypeError:  # a scheduler whose entries take `samples` explicitly
            batch.append(ScheduledSeq(seq, 1, True))
    return batch


def bare_runner(num: int, context: int, block_size: int):
    """A ModelRunner with only what `_prepare` reads (no model, no KV cache)."""
    import torch

    from shoal.engine import model_runner as mr

    runner = object.__new__(mr.ModelRunner)
    runner.block_size = block_size
    runner.device = torch.device("cpu")
    runner.staging = mr.PinnedStaging(runner.device)
    runner.graphs = None
    runner.max_blocks_per_seq = -(-2 * context // block_size)
    if hasattr(mr, "BlockTableMirror"):
        runner.block_tables = mr.BlockTableMirror(runner.max_blocks_per_seq, num)
    return runner


def best_us(fn, repeats: int, calls: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t) / calls)
    return 1e6 * best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seqs", type=int, default=64)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()

    import torch

    import shoal.engine.cuda_graphs as cg

    batch = make_batch(args.seqs, args.context, 16)
    runner = bare_runner(args.seqs, args.context, 16)
    for _ in range(20):
        runner._prepare(batch, None)
    rows = {"eager layout: _prepare": best_us(lambda: runner._prepare(batch, None), args.repeats, args.calls)}
    if hasattr(cg, "StagedDecode"):
        hidden = torch.zeros(cg.padded_batch_size(cg.graph_batch_sizes(args.seqs), args.seqs), 8)
        runner.graphs = cg.DecodeGraphs(lambda *a: hidden, None, None, args.seqs, runner.max_blocks_per_seq,
                                        runner.device, capture=False)
        rows["graph layout: _prepare"] = best_us(lambda: runner._prepare(batch, None), args.repeats, args.calls)
        rows["graph layout: _prepare + DecodeGraphs.load"] = best_us(
            lambda: runner.graphs.load(runner._prepare(batch, None)[0], None), args.repeats, args.calls)
    print(f"{args.seqs} decoding sequences, {args.context} tokens of context each, block size 16, torch "
          f"{torch.__version__}")
    for name, us in rows.items():
        print(f"| {name} | {us:.1f} us |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
