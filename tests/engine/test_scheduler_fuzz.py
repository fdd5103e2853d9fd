"""Random workloads through the whole engine: every request finishes with its length, no block leaks.

Small KV pools, shared prefixes, budgets and admission caps moved mid-run, aborts.
"""

from __future__ import annotations

import random

import pytest

from shoal.engine import LLM, SamplingParams


@pytest.mark.parametrize("seed", range(12))
def test_random_workload_finishes_everything_and_leaks_nothing(tiny_llama, seed):
    rng = random.Random(seed)
    block = rng.choice([4, 8, 16])
    max_len = rng.choice([32, 64, 96])
    llm = LLM(tiny_llama[0], kv_cache_tokens=rng.randint(max_len, 3 * max_len), max_model_len=max_len,
              block_size=block, max_num_batched_tokens=64, max_num_seqs=8)
    engine = llm.engine
    engine.set_runtime_limits(max_num_seqs=rng.randint(1, 8), max_num_batched_tokens=rng.randint(block, 64))
    shared = [rng.randrange(3, 500) for _ in range(rng.randint(0, max_len // 2))]
    expected: dict[str, int | None] = {}
    for i in range(rng.randint(1, 10)):
        prompt = (shared + [rng.randrange(3, 500) for _ in range(rng.randint(1, max_len // 2))])[: max_len - 1]
        max_tokens = rng.randint(1, 40)
        params = SamplingParams(temperature=rng.choice([0.0, 0.7]), max_tokens=max_tokens, ignore_eos=True, seed=i)
        engine.add_request(str(i), prompt, params)
        expected[str(i)] = min(max_tokens, max_len - len(prompt))
    finished = {}
    for _ in range(5000):
        if not engine.has_unfinished():
            break
        if rng.random() < 0.1:
            engine.set_runtime_limits(max_num_seqs=rng.randint(1, 8), max_num_batched_tokens=rng.randint(block, 64))
        if rng.random() < 0.03 and engine.requests:
            rid = rng.choice(sorted(engine.requests))
            finished[rid] = engine.abort(rid)
            expected[rid] = None
        finished.update((o.request_id, o) for o in engine.step() if o.finished)
    assert not engine.has_unfinished(), "the engine stopped making progress"
    assert engine.block_manager.usage == 0.0
    assert all(b.ref_count == 0 for b in engine.block_manager.blocks)
    for rid, length in expected.items():
        if length is None:
            assert finished[rid].finish_reason == "abort"
        else:
            assert len(finished[rid].token_ids) == length and finished[rid].finish_reason == "length"
