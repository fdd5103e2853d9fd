"""Exactness survives the scheduler's tricks: chunked prefill, preemption, prefix-cache hits, a moving admission cap."""

from __future__ import annotations

import pytest
import torch

from shoal.engine import LLM, SamplingParams

N = 20
GREEDY = SamplingParams(temperature=0.0, max_tokens=N, ignore_eos=True)


def random_prompts(lengths, seed=0, vocab=512):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in lengths]


@pytest.fixture(scope="module")
def references(tiny_llama, tiny_qwen3, hf_greedy):
    """transformers' greedy continuation per (model, prompt), computed once."""
    cache: dict = {}

    def ref(tiny, prompt):
        key = (id(tiny), tuple(prompt))
        if key not in cache:
            cache[key] = hf_greedy(tiny[1], prompt, N)
        return cache[key]

    return ref


@pytest.fixture(params=["tiny_llama", "tiny_qwen3"])
def tiny(request):
    return request.getfixturevalue(request.param)


def test_chunked_prefill_forced_by_a_tiny_token_budget(tiny, references):
    llm = LLM(tiny[0], kv_cache_tokens=2048, max_model_len=512, max_num_batched_tokens=16)
    prompts = random_prompts([150, 3, 40, 17], seed=2)
    outs = llm.generate(prompts, GREEDY)
    for prompt, out in zip(prompts, outs):
        assert out.token_ids == references(tiny, prompt)
    # 210 prompt tokens through a 16-token budget need many more steps than the 20 decode steps
    assert llm.engine.steps_total >= 210 // 16 + N


def test_preemption_forced_by_a_tiny_kv_pool(tiny, references):
    llm = LLM(tiny[0], kv_cache_tokens=96, max_model_len=96, block_size=8)
    prompts = random_prompts([30, 25, 41, 12, 33], seed=3)
    outs = llm.generate(prompts, GREEDY)
    assert llm.engine.num_preemptions_total > 0
    for prompt, out in zip(prompts, outs):
        assert out.token_ids == references(tiny, prompt)
    assert llm.engine.block_manager.usage == 0.0


def test_prefix_cache_hits_from_shared_prefixes(tiny, references):
    llm = LLM(tiny[0], kv_cache_tokens=2048, max_model_len=512)
    [shared] = random_prompts([48], seed=4)
    tails = random_prompts([5, 9, 16, 1], seed=5)
    prompts = [shared + t for t in tails]
    first = llm.generate(prompts[:1], GREEDY)
    rest = llm.generate(prompts[1:], GREEDY)
    assert llm.engine.prefix_cache_hits_total >= 3 * 48
    for prompt, out in zip(prompts, first + rest):
        assert out.token_ids == references(tiny, prompt)
    # a repeated prompt is served from cache and still continues identically
    [again] = llm.generate(prompts[:1], GREEDY)
    assert again.token_ids == first[0].token_ids


def test_admission_cap_changed_mid_run(tiny_llama, references):
    llm = LLM(tiny_llama[0], kv_cache_tokens=4096, max_model_len=512, max_num_seqs=8)
    engine = llm.engine
    prompts = random_prompts([10, 20, 30, 5, 7, 9, 11, 13], seed=6)
    for i, p in enumerate(prompts):
        engine.add_request(f"r{i}", p, GREEDY)
    results = {}
    engine.set_runtime_limits(max_num_seqs=3)
    running_seen = []
    for step in range(400):
        if step == 3:
            assert len(engine.scheduler.running) == 3
            engine.set_runtime_limits(max_num_seqs=1)  # lowering never evicts what runs
        if step == 4:
            assert len(engine.scheduler.running) == 3
        if step == 12:
            engine.set_runtime_limits(max_num_seqs=6)
        for out in engine.step():
            if out.finished:
                results[out.request_id] = out
        running_seen.append(len(engine.scheduler.running))
        if not engine.has_unfinished():
            break
    assert running_seen[12] == 6 and max(running_seen) == 6
    assert engine.num_preemptions_total == 0
    for i, p in enumerate(prompts):
        assert results[f"r{i}"].token_ids == references(tiny_llama, p)


def test_preemption_and_prefix_hits_together_in_a_tiny_pool(tiny, references):
    # Waiting requests used to keep their matched prefix blocks and could starve a lone running one.
    llm = LLM(tiny[0], kv_cache_tokens=96, max_model_len=96, block_size=8)
    [shared] = random_prompts([40], seed=7)
    prompts = [shared + tail for tail in random_prompts([5, 9, 13, 2, 17, 6, 8], seed=8)]
    outs = llm.generate(prompts, GREEDY)
    assert llm.engine.num_preemptions_total > 0 and llm.engine.prefix_cache_hits_total > 0
    for prompt, out in zip(prompts, outs):
        assert out.token_ids == references(tiny, prompt)
    assert llm.engine.block_manager.usage == 0.0
