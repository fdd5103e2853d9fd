"""Asynchronous scheduling (step N+1 launched before step N's tokens are read back) changes no output.

On CPU every launch completes at once, but the bookkeeping is the one CUDA runs: input tokens taken
from the previous launch's sampled tensor, placeholders, retiring sequences whose last token is in
flight, prefix-cache commits after the tokens are known, finishing one step late.
"""

from __future__ import annotations

import torch

from shoal.engine import LLM, SamplingParams
from shoal.engine.llm_engine import PENDING

N = 20
GREEDY = SamplingParams(temperature=0.0, max_tokens=N, ignore_eos=True)


def prompts_of(lengths, seed, vocab=512):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in lengths]


def test_greedy_matches_transformers_through_chunking_preemption_and_prefix_hits(tiny_qwen3, hf_greedy):
    llm = LLM(tiny_qwen3[0], kv_cache_tokens=96, max_model_len=96, block_size=8, max_num_batched_tokens=24,
              async_scheduling=True)
    [shared] = prompts_of([40], seed=7)
    prompts = [shared + tail for tail in prompts_of([5, 9, 13, 2, 17, 6, 8], seed=8)]
    outs = llm.generate(prompts, GREEDY)
    engine = llm.engine
    assert engine.num_preemptions_total > 0 and engine.prefix_cache_hits_total > 0
    for prompt, out in zip(prompts, outs):
        assert out.token_ids == hf_greedy(tiny_qwen3[1], prompt, N)
    assert engine.block_manager.usage == 0.0 and engine._in_flight is None


def test_stops_seeds_and_lengths_equal_the_synchronous_engine(tiny_llama):
    prompts = prompts_of([5, 30, 12, 3, 44, 9], seed=11)
    # Stop ids drawn from what greedy decoding produces, so some requests stop early (one step before
    # the asynchronous engine learns it); seeded sampling must not depend on the batch either.
    [probe] = LLM(tiny_llama[0], kv_cache_tokens=1024, max_model_len=128).generate(prompts[:1], GREEDY)
    stops = probe.token_ids[3:5]
    params = [
        SamplingParams(temperature=0.0, max_tokens=25, stop_token_ids=stops),
        SamplingParams(temperature=0.9, max_tokens=7, seed=3, ignore_eos=True),
        SamplingParams(temperature=0.0, max_tokens=1),
        SamplingParams(temperature=0.7, top_k=20, max_tokens=30, seed=5, stop_token_ids=stops),
        SamplingParams(temperature=0.0, max_tokens=200, ignore_eos=True),  # stops at the context length
        SamplingParams(temperature=0.0, max_tokens=12, stop_token_ids=stops),
    ]
    runs = {}
    for mode in (False, True):
        llm = LLM(tiny_llama[0], kv_cache_tokens=1024, max_model_len=64, async_scheduling=mode)
        runs[mode] = [(o.token_ids, o.finish_reason) for o in llm.generate(prompts, params)]
        assert llm.engine.block_manager.usage == 0.0
    assert runs[True] == runs[False]
    assert {reason for _, reason in runs[True]} == {"stop", "length"}


def test_streamed_deltas_are_every_token_once_and_never_a_placeholder(tiny_llama):
    llm = LLM(tiny_llama[0], kv_cache_tokens=1024, max_model_len=128, async_scheduling=True)
    engine = llm.engine
    prompts = prompts_of([4, 17, 9], seed=12)
    for i, p in enumerate(prompts):
        engine.add_request(f"s{i}", p, SamplingParams(temperature=0.0, max_tokens=6 + 3 * i, ignore_eos=True))
    deltas: dict[str, list[int]] = {}
    finals = {}
    steps_without_output = 0
    while engine.has_unfinished():
        outs = engine.step()
        steps_without_output += not outs
        for out in outs:
            assert PENDING not in out.token_ids
            deltas.setdefault(out.request_id, []).extend(out.new_token_ids)
            if out.finished:
                finals[out.request_id] = out
    assert steps_without_output == 1  # only the first step: its tokens arrive with the second
    for rid, out in finals.items():
        assert deltas[rid] == out.token_ids and len(out.token_ids) == 6 + 3 * int(rid[1])


def test_abort_while_a_token_is_in_flight(tiny_llama):
    llm = LLM(tiny_llama[0], kv_cache_tokens=1024, max_model_len=128, async_scheduling=True)
    engine = llm.engine
    engine.add_request("a", [5, 6, 7], GREEDY)
    engine.add_request("b", [8, 9], GREEDY)
    for _ in range(4):
        engine.step()
    assert engine._in_flight is not None
    aborted = engine.abort("a")
    assert aborted.finish_reason == "abort" and PENDING not in aborted.token_ids and len(aborted.token_ids) == 3
    finals = []
    while engine.has_unfinished():
        finals += [o for o in engine.step() if o.finished]
    [b] = finals
    assert b.request_id == "b" and len(b.token_ids) == N
    assert engine.block_manager.usage == 0.0


def test_step_stats_count_prompt_tokens_when_launched_and_tokens_when_read_back(tiny_llama):
    llm = LLM(tiny_llama[0], kv_cache_tokens=1024, max_model_len=128, async_scheduling=True)
    engine = llm.engine
    engine.add_request("a", [5, 6, 7, 8, 9], SamplingParams(temperature=0.0, max_tokens=3, ignore_eos=True))
    seen = []
    while engine.has_unfinished():
        engine.step()
        s = engine.last_step_stats
        seen.append((s.num_prompt_tokens, s.num_generation_tokens))
    # launch prefill; launch decode + read 1; launch decode (its token is surely the last) + read 1; read 1
    assert seen == [(5, 0), (0, 1), (0, 1), (0, 1)]
    assert engine.generation_tokens_total == 3 and engine.prompt_tokens_total == 5


async def test_async_llm_streams_the_offline_result(tiny_llama):
    from shoal.engine import AsyncLLM

    params = SamplingParams(temperature=0.0, max_tokens=9, ignore_eos=True)
    llm = AsyncLLM(tiny_llama[0], kv_cache_tokens=1024, max_model_len=128, async_scheduling=True)
    await llm.start()
    try:
        outs = [o async for o in llm.generate("a", [4, 5, 6], params)]
    finally:
        await llm.shutdown()
    [offline] = LLM(tiny_llama[0], kv_cache_tokens=1024, max_model_len=128).generate([[4, 5, 6]], params)
    assert sum((o.new_token_ids for o in outs), []) == offline.token_ids == outs[-1].token_ids
    assert outs[-1].finished and not any(o.finished for o in outs[:-1])
