"""AsyncLLM: streaming from the engine thread, abort on cancel, runtime limits, stats and step listeners."""

from __future__ import annotations

import asyncio

import pytest

from shoal.engine import AsyncLLM, LLM, SamplingParams, StepStats

GREEDY = SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True)
LONG = SamplingParams(temperature=0.0, max_tokens=400, ignore_eos=True)


@pytest.fixture
async def engine(tiny_llama):
    llm = AsyncLLM(tiny_llama[0], kv_cache_tokens=1024, max_model_len=512, max_num_seqs=8, max_num_batched_tokens=256)
    await llm.start()
    yield llm
    await llm.shutdown()


async def collect(llm, rid, prompt, params):
    return [out async for out in llm.generate(rid, prompt, params)]


async def test_streams_deltas_that_add_up_to_the_offline_result(engine, tiny_llama):
    outs = await collect(engine, "a", [5, 6, 7, 8, 9], GREEDY)
    assert [o.finished for o in outs] == [False] * 5 + [True]
    assert sum((o.new_token_ids for o in outs), []) == outs[-1].token_ids
    assert outs[-1].finish_reason == "length"
    [offline] = LLM(tiny_llama[0], kv_cache_tokens=1024, max_model_len=512).generate([[5, 6, 7, 8, 9]], GREEDY)
    assert outs[-1].token_ids == offline.token_ids
    m = outs[-1].metrics
    assert m.arrival_time <= m.first_scheduled_time <= m.first_token_time <= m.finished_time


async def test_concurrent_streams(engine):
    results = await asyncio.gather(*(collect(engine, f"r{i}", [3 + i] * (4 + i), GREEDY) for i in range(6)))
    assert all(len(r[-1].token_ids) == 6 and r[-1].finished for r in results)


async def test_cancelled_consumer_aborts_and_frees_blocks(engine):
    seen = asyncio.Event()

    async def consume():
        async for _ in engine.generate("long", [5] * 40, LONG):
            seen.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(seen.wait(), 10)
    assert engine.stats().kv_usage > 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: engine.is_idle and engine.stats().num_running == 0)
    assert engine.stats().kv_usage == 0.0


async def test_breaking_out_of_the_stream_aborts(engine):
    stream = engine.generate("brk", [5] * 10, LONG)
    async for out in stream:
        if len(out.token_ids) >= 2:
            break
    await stream.aclose()
    await wait_until(lambda: engine.is_idle)
    assert engine.stats().kv_usage == 0.0


async def test_abort_ends_the_stream_with_reason_abort(engine):
    outs = []

    async def consume():
        async for out in engine.generate("ab", [5] * 10, LONG):
            outs.append(out)
            if len(outs) == 2:
                engine.abort("ab")

    await asyncio.wait_for(consume(), 20)
    assert outs[-1].finished and outs[-1].finish_reason == "abort"
    assert engine.stats().kv_usage == 0.0


async def test_bad_input_raises_before_streaming(engine):
    with pytest.raises(ValueError, match="prompt"):
        await collect(engine, "big", [5] * 600, GREEDY)
    with pytest.raises(ValueError, match="prompt"):
        await collect(engine, "empty", [], GREEDY)
    assert engine.is_idle


async def test_runtime_limits_and_listeners(engine):
    assert engine.capacity.max_num_seqs == 8 and engine.runtime_limits.max_num_batched_tokens == 256
    steps: list[StepStats] = []
    engine.add_step_listener(steps.append)
    limits = engine.set_runtime_limits(max_num_seqs=2)
    assert limits.max_num_seqs == 2 and limits.max_num_batched_tokens == 256
    await asyncio.gather(*(collect(engine, f"l{i}", [7] * 5, GREEDY) for i in range(5)))
    assert max(s.num_running for s in steps) == 2
    assert sum(s.num_generation_tokens for s in steps) == 30
    assert any(s.num_waiting > 0 for s in steps)
    with pytest.raises(ValueError, match="max_num_seqs"):
        engine.set_runtime_limits(max_num_seqs=9)
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        engine.set_runtime_limits(max_num_batched_tokens=8)  # below block_size
    stats = engine.stats()
    assert stats.generation_tokens_total == 30 and stats.steps_total == len(steps)
    assert stats.prompt_tokens_total == 25 and stats.last_step_time is not None


async def wait_until(predicate, timeout=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_shutdown_ends_open_streams_with_abort(engine):
    outs = []

    async def consume():
        async for out in engine.generate("sd", [5] * 10, LONG):
            outs.append(out)

    task = asyncio.create_task(consume())
    await wait_until(lambda: len(outs) >= 1)
    await engine.shutdown()
    await asyncio.wait_for(task, 10)
    assert outs[-1].finished and outs[-1].finish_reason == "abort"
    with pytest.raises(RuntimeError, match="not running"):
        await collect(engine, "late", [5], GREEDY)
