"""The model runner's step inputs equal those of the straightforward build they replaced, on real engine runs.

`step_inputs_reference.reference_prepare` is the former `ModelRunner._prepare` (block tables rebuilt from every
sequence's list each step). Engines run random workloads (chunked prefills, preemption, prefix hits, seeded
sampling, pending tokens of asynchronous scheduling, one-token prompt chunks) while every step's inputs are
compared with it:
the eager layout, and the CUDA-graph layout (static buffers after the copies and the pending-token gather,
padding rows included), with the graphs run eagerly out of their static buffers since this machine has no GPU.
"""

from __future__ import annotations

import random

import pytest
import torch
from step_inputs_reference import Checker, emulate_graphs

from shoal.engine import LLM, SamplingParams


def random_workload(seed: int, vocab: int = 512):
    rng = random.Random(seed)
    shared = [rng.randrange(3, vocab) for _ in range(rng.choice([8, 17, 24]))]
    prompts, params = [], []
    for i in range(rng.randint(5, 9)):
        tail = [rng.randrange(3, vocab) for _ in range(rng.randint(1, 30))]
        prompts.append(shared + tail if rng.random() < 0.6 else tail)
        if rng.random() < 0.5:
            params.append(SamplingParams(temperature=0.0, max_tokens=rng.randint(1, 24), ignore_eos=True))
        else:
            params.append(SamplingParams(temperature=0.8, top_k=rng.choice([-1, 20]), seed=rng.randrange(100),
                                         max_tokens=rng.randint(1, 24), ignore_eos=True))
    return prompts, params


def one_token_chunks():
    """Three short requests decode while a long one's prompt trickles in one token a step (budget 4): decode
    steps where one row does not sample."""
    prompts = [[5, 6], [7, 8], [9, 10], list(range(20, 50))]
    return prompts, [SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)] * 4


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "graph-layout"])
def test_inputs_equal_the_reference_on_random_runs(tiny_llama, graphs):
    seen: dict[str, int] = {}
    preemptions = hits = 0
    budgets = [5, 12, 24, 64, 4]
    for seed, budget in enumerate(budgets):
        prompts, params = random_workload(seed) if seed < 4 else one_token_chunks()
        llm = LLM(tiny_llama[0], kv_cache_tokens=112, max_model_len=112, block_size=4, max_num_seqs=8,
                  max_num_batched_tokens=budget, async_scheduling=seed % 2 == 0)
        if graphs:
            emulate_graphs(llm)
        checker = Checker(llm.engine.runner)
        outs = llm.generate(prompts, params)
        assert [len(o.token_ids) for o in outs] == [p.max_tokens for p in params]
        assert llm.engine.block_manager.usage == 0.0
        preemptions += llm.engine.num_preemptions_total
        hits += llm.engine.prefix_cache_hits_total
        for k, v in checker.seen.items():
            seen[k] = seen.get(k, 0) + v
    assert preemptions > 0 and hits > 0
    assert seen["mixed"] > 0 and seen["pending"] > 0 and seen["gather"] > 0
    if graphs:
        assert seen["graph"] > 0 and seen["padded"] > 0
    else:
        assert seen["decode"] > 0


def test_graph_layout_greedy_tokens_equal_transformers(tiny_qwen3, hf_greedy):
    llm = LLM(tiny_qwen3[0], kv_cache_tokens=96, max_model_len=96, block_size=8, max_num_batched_tokens=24,
              max_num_seqs=6, async_scheduling=True)
    emulate_graphs(llm)
    gen = torch.Generator().manual_seed(21)
    [shared] = [torch.randint(3, 512, (24,), generator=gen).tolist()]
    prompts = [shared + torch.randint(3, 512, (n,), generator=gen).tolist() for n in (5, 9, 13, 2, 17)]
    checker = Checker(llm.engine.runner)
    greedy = SamplingParams(temperature=0.0, max_tokens=20, ignore_eos=True)
    outs = llm.generate(prompts, greedy)
    assert checker.seen["graph"] > 0 and checker.seen["padded"] > 0
    assert llm.engine.num_preemptions_total > 0
    for prompt, out in zip(prompts, outs):
        assert out.token_ids == hf_greedy(tiny_qwen3[1], prompt, 20)
