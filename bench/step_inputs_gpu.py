"""The model runner's step inputs on a GPU: the checks the CPU tests cannot make (CUDA graphs, pinned copies).

  check  MODEL_DIR      engines on mixed workloads (chunked prefills, preemption, prefix hits, seeded sampling,
                        asynchronous scheduling) with every step's inputs compared with the former `_prepare`
                        (tests/engine/step_inputs_reference.py): the eager inputs, and the decode graphs' static
                        buffers after the copies and the pending-token gather, padding rows included.
  tokens MODEL_DIR OUT  token ids of a fixed workload, with CUDA graphs and without, written to OUT as JSON.
                        Run it with two source trees and compare the files: a change to how inputs reach the
                        graphs must leave every token as it was.

  PYTHONPATH=src python3 bench/step_inputs_gpu.py check .carry/smollm2     (random weights: --load-format dummy)
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "engine"))

DEVICE = dict(device=os.environ.get("DEVICE", "cuda"), dtype=os.environ.get("DTYPE", "bfloat16"),
              load_format=os.environ.get("LOAD_FORMAT", "dummy"))
NUM_REQUESTS = int(os.environ.get("NUM_REQUESTS", "60"))


def workload(seed: int, n: int, vocab: int):
    from shoal.engine import SamplingParams

    rng = random.Random(seed)
    shared = [rng.randrange(1000, vocab) for _ in range(40)]
    prompts, params = [], []
    for i in range(n):
        tail = [rng.randrange(1000, vocab) for _ in range(rng.randint(1, 300))]
        prompts.append(shared + tail if i % 2 else tail)
        if i % 3:
            params.append(SamplingParams(temperature=0.0, max_tokens=rng.randint(1, 200), ignore_eos=True))
        else:
            params.append(SamplingParams(temperature=0.8, top_k=rng.choice([-1, 50]), seed=i,
                                         max_tokens=rng.randint(1, 200), ignore_eos=True))
    return prompts, params


def check(model_dir: str) -> int:
    import torch
    from step_inputs_reference import Checker

    from shoal.engine import LLM

    total: dict[str, int] = {}
    # (token budget, KV tokens, sequence cap): chunking and preemption; many decodes; a small pool
    for budget, kv_tokens, seqs in ((64, 6000, 16), (512, 60000, 48), (2048, 4000, 40)):
        llm = LLM(model_dir, **DEVICE, max_num_seqs=seqs, max_model_len=1024, kv_cache_tokens=kv_tokens,
                  max_num_batched_tokens=budget)
        prompts, params = workload(budget, NUM_REQUESTS, llm.engine.model_config.vocab_size)
        checker = Checker(llm.engine.runner)
        outs = llm.generate(prompts, params)
        assert [len(o.token_ids) for o in outs] == [p.max_tokens for p in params], "a request fell short"
        seen = dict(checker.seen, preemptions=llm.engine.num_preemptions_total,
                    prefix_hits=llm.engine.prefix_cache_hits_total, steps=llm.engine.steps_total)
        print(f"budget {budget}, KV {kv_tokens}, cap {seqs}: {seen}", flush=True)
        for key, value in seen.items():
            total[key] = total.get(key, 0) + value
        del llm, checker
        torch.cuda.empty_cache()
    print("every step's inputs equal the reference:", total)
    return 0


def tokens(model_dir: str, out: str) -> int:
    import torch

    from shoal.engine import LLM

    result = {}
    for graphs in ("1", "0"):
        os.environ["SHOAL_CUDA_GRAPHS"] = graphs  # read when the model runner starts
        llm = LLM(model_dir, **DEVICE, max_num_seqs=48, max_model_len=1024, kv_cache_tokens=20000,
                  max_num_batched_tokens=512)
        prompts, params = workload(7, NUM_REQUESTS, llm.engine.model_config.vocab_size)
        result["graphs" if graphs == "1" else "eager"] = [o.token_ids for o in llm.generate(prompts, params)]
        del llm
        torch.cuda.empty_cache()
    Path(out).write_text(json.dumps(result))
    print(f"{sum(map(len, result['graphs']))} tokens per mode written to {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("check", "tokens"):
        raise SystemExit(__doc__)
    raise SystemExit(check(sys.argv[2]) if sys.argv[1] == "check" else tokens(sys.argv[2], sys.argv[3]))
