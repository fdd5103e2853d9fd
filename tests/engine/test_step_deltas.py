"""LLMEngine.step_deltas (what the server's engine process sends) says exactly what step()'s outputs say."""

from __future__ import annotations

import pytest

from shoal.engine import LLM, SamplingParams

PROMPTS = ["The capital of France is", "List three colors:", "Once upon a time"]
PARAMS = [
    SamplingParams(temperature=0.0, max_tokens=12, stop=[" is", "."]),  # stop strings hold text back, then cut
    SamplingParams(temperature=0.8, max_tokens=9, seed=4),
    SamplingParams(temperature=0.0, max_tokens=14, ignore_eos=True),
]


def drive(engine, step) -> list:
    """Add the requests, abort one midway, and collect every item `step` gives, step by step, as tuples."""
    for i, (prompt, params) in enumerate(zip(PROMPTS, PARAMS)):
        engine.add_request(f"r{i}", prompt, params)
    steps = []
    while engine.has_unfinished():
        steps.append([item if isinstance(item, tuple) else as_tuple(item) for item in step()])
        if len(steps) == 5:
            steps.append([as_tuple(engine.abort("r2"))])  # an abort is a RequestOutput either way
    return steps


def as_tuple(out) -> tuple:
    m = out.metrics
    return (out.request_id, out.new_token_ids, out.new_text, out.finished, out.finish_reason,
            (m.arrival_time, m.first_scheduled_time, m.first_token_time, m.finished_time))


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_deltas_equal_the_outputs_of_step(smol_llm_dir, async_scheduling):
    kwargs = dict(kv_cache_tokens=2048, max_model_len=256, async_scheduling=async_scheduling)
    by_outputs = drive((a := LLM(smol_llm_dir, **kwargs).engine), a.step)
    by_deltas = drive((b := LLM(smol_llm_dir, **kwargs).engine), b.step_deltas)
    strip_times = lambda steps: [[item[:5] for item in step] for step in steps]  # noqa: E731 - clocks differ
    assert strip_times(by_outputs) == strip_times(by_deltas)
    assert sum(len(item[1]) for step in by_deltas for item in step) >= 12  # tokens did flow
    finals = {item[0]: item for step in by_deltas for item in step if item[3]}
    assert {rid: item[4] for rid, item in finals.items()} == {"r0": "stop", "r1": finals["r1"][4], "r2": "abort"}
    assert all(None not in item[5][:1] for step in by_deltas for item in step)  # arrival time always set
    assert b.block_manager.usage == 0.0
