"""LLMEngine.warm_up: the eager path's batch shapes run once at start-up (CUDA), and leave nothing behind."""

from __future__ import annotations

from shoal.engine import LLM, SamplingParams
from shoal.engine.llm_engine import warm_up_batches
from shoal.engine.outputs import RuntimeLimits


def test_warm_up_batches_cover_the_shape_classes_within_the_limits():
    batches = warm_up_batches(RuntimeLimits(256, 8192), max_model_len=2048)
    prompts = [lens for decodes, lens in batches if decodes == 0]
    assert [128] in prompts and [129] in prompts and [1] in prompts  # multiple of 16 or not, one token
    assert [16] * 16 in prompts and [17] * 17 in prompts and [1] * 256 in prompts  # the search buckets
    assert any(decodes and lens for decodes, lens in batches)  # prompts joining running decodes
    small = warm_up_batches(RuntimeLimits(4, 64), max_model_len=40)
    assert all(d + len(lens) <= 4 and all(n <= 64 and n < 40 for n in lens) for d, lens in small)
    assert all(d < 4 and lens for d, lens in small)


def test_warm_up_leaves_no_request_total_or_kv_block_behind(tiny_llama):
    path, _ = tiny_llama
    kwargs = dict(max_num_seqs=8, kv_cache_tokens=4096, max_model_len=128)
    llm = LLM(path, **kwargs)
    engine = llm.engine
    engine.warm_up()  # on CPU not done at start-up (nothing compiles); run here for its bookkeeping
    assert engine.requests == {} and not engine.has_unfinished() and engine._in_flight is None
    assert engine.block_manager.usage == 0.0
    stats = engine.stats()
    assert (stats.steps_total, stats.prompt_tokens_total, stats.generation_tokens_total) == (0, 0, 0)
    assert stats.last_step_time is None and stats.prefix_cache_queries_total == 0
    params = SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    assert llm.generate([prompt], params)[0].token_ids == LLM(path, **kwargs).generate([prompt], params)[0].token_ids
