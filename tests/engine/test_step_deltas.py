"""LLMEngine.step_deltas (what the server's engine process sends) says exactly what step()'s outputs say."""

from __future__ import annotations

import pytest

from shoal.engine import LLM, SamplingParams
from shoal.engine.outputs import StepDeltas, split_deltas

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
        got = step()
        steps.append(from_deltas(got) if isinstance(got, StepDeltas) else [as_tuple(out) for out in got])
        if len(steps) == 5:
            steps.append([as_tuple(engine.abort("r2"))])  # an abort is a RequestOutput either way
    return steps


def from_deltas(deltas: StepDeltas) -> list[tuple]:
    """The deltas as as_tuple() gives each request's output."""
    request_ids, token_ids, counts, texts, finished = deltas.as_tuple()
    if counts is None:
        assert len(token_ids) == len(request_ids)  # None only where every request got one token
    ends = {rid: (reason, times) for rid, reason, times in finished}
    assert set(ends) <= set(request_ids)
    none = (None, (None, None, None, None))
    return [(rid, ids, text, rid in ends, *ends.get(rid, none))
            for rid, ids, text in split_deltas(request_ids, token_ids, counts, texts)]


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
    assert all(None not in item[5] for step in by_deltas for item in step if item[3])  # times set once finished
    assert b.block_manager.usage == 0.0


def test_deltas_of_requests_with_other_than_one_token_keep_their_counts():
    class Seq:  # the fields StepDeltas.add reads
        def __init__(self, rid, out, text, reason=None):
            self.request_id, self.output_token_ids, self.finish_reason = rid, out, reason
            self.num_sent_tokens = self.num_sent_chars = 0
            self.detokenizer = type("D", (), {"visible_text": lambda _, finished: text})()
            self.metrics = type("M", (), dict(arrival_time=1.0, first_scheduled_time=2.0, first_token_time=3.0,
                                              finished_time=4.0))()

    one = StepDeltas()
    one.add(Seq(7, [5], "a"), 1)
    one.add(Seq(8, [6], "b"), 1)
    assert one.as_tuple() == ([7, 8], [5, 6], None, ["a", "b"], [])
    mixed = StepDeltas()
    mixed.add(Seq(7, [5, 9], "ab"), 2)
    mixed.add(Seq(8, [], "", "abort"), 0)
    mixed.add(Seq(9, [4], "c"), 1)
    ids, tokens, counts, texts, finished = mixed.as_tuple()
    assert counts == [2, 0, 1] and finished == [(8, "abort", (1.0, 2.0, 3.0, 4.0))]
    assert list(split_deltas(ids, tokens, counts, texts)) == [(7, [5, 9], "ab"), (8, [], ""), (9, [4], "c")]
