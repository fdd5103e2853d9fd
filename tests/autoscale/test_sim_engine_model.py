"""The pieces of the simulator's engine model that bench/sim_vs_engine.py checks against the real CPU server.

The comparison itself needs a quiet CPU and minutes (recorded in bench/results/sim_vs_engine.json, summarised in
bench/RESULTS.md); here, deterministically: the step-model fit, prefill interference on decode steps, the queue the
admission cap forms, and how the client turns streamed chunks into inter-token latencies.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shoal.sim.calibration import fit_cpu_step_model
from shoal.sim.replay import replay_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from calibrate_sim import token_gaps  # noqa: E402

A, S, C = 0.06, 0.003, 0.0028  # a weights pass, per sequence, per token (seconds): the CPU server's order


def model_steps():
    decode = [(b, A + (S + C) * b) for b in (1, 2, 3, 4, 8)]
    prefill = [(n, A + S + C * n) for n in (16, 32, 64, 120)]
    return decode, prefill


def test_fitted_table_reproduces_the_measured_steps_and_interpolates_between():
    cal = fit_cpu_step_model(*model_steps(), kv_capacity_tokens=16384, name="synthetic")
    for b, t in model_steps()[0]:
        assert cal.step_seconds(0, 0, b, 16 * b) == pytest.approx(t, rel=1e-12)
    for n, t in model_steps()[1]:
        assert cal.step_seconds(n, n * n / 2, 0, 0, 1) == pytest.approx(t, rel=1e-12)
    assert cal.step_seconds(40, 800, 8, 400, 1) == pytest.approx(A + S + C * 48, rel=1e-12)  # between 32 and 64
    assert cal.step_seconds(0, 0, 1, 0) == pytest.approx(A + S + C)


def test_fit_keeps_what_the_cpu_really_does_at_two_and_three_rows():
    # PyTorch's CPU matmul: 2 and 3 rows cost more than 4 (measured); a line or a roofline would smooth that away
    decode = [(1, 0.066), (2, 0.114), (3, 0.118), (4, 0.090), (8, 0.102)]
    cal = fit_cpu_step_model(decode, model_steps()[1], 16384, "measured shape")
    steps = [cal.step_seconds(0, 0, b, 16 * b) for b in (1, 2, 3, 4)]
    assert steps == pytest.approx([0.066, 0.114, 0.118, 0.090])


def test_fit_refuses_what_does_not_determine_it_and_says_what_to_do():
    decode, prefill = model_steps()
    with pytest.raises(ValueError, match=">= 2 batch sizes"):
        fit_cpu_step_model(decode[:1], prefill, 16384, "x")
    with pytest.raises(ValueError, match="rerun the timing"):
        fit_cpu_step_model([(1, 0.0), *decode[1:]], prefill, 16384, "x")


def test_a_prefill_chunk_stretches_the_decode_step_it_shares():
    cal = fit_cpu_step_model(*model_steps(), 16384, "synthetic")
    # one request decodes alone; a 120-token prompt arrives mid-way: the running request's next token waits for the
    # mixed step (the prefill's 120 tokens plus its own), then decoding goes back to two-sequence steps
    load = [(0.0, 16, 12), (0.5, 120, 4)]
    r = replay_engine(cal, load, max_num_seqs=8, max_num_batched_tokens=128, sample_times=[])
    decode_alone = cal.step_seconds(0, 0, 1, 20)
    mixed = max(r.itl)
    assert mixed == pytest.approx(A + S + C * 121, rel=1e-9)  # the table at 121 tokens
    assert mixed > 4 * decode_alone
    assert r.ttft[0] == pytest.approx(A + S + 16 * C, rel=0.01)
    assert r.ttft[1] >= mixed  # the new request's first token comes out of that same mixed step
    assert len(r.itl) == (12 - 1) + (4 - 1)


def test_admission_cap_forms_the_queue_the_gauges_show():
    cal = fit_cpu_step_model(*model_steps(), 16384, "synthetic")
    load = [(0.0, 16, 20)] * 6  # six at once against a cap of four
    samples = [0.05 * i for i in range(60)]
    r = replay_engine(cal, load, max_num_seqs=4, max_num_batched_tokens=128, sample_times=samples)
    assert len(r.waiting) == len(r.running) == len(samples)
    assert max(r.running) == 4 and r.waiting[1] == 2
    first_done = min(t for t in samples if r.waiting[samples.index(t)] == 0)
    assert first_done > 19 * cal.step_seconds(0, 0, 4, 4 * 26)  # the two wait until four finish 20 tokens
    assert r.waiting[-1] == 0
    # the two that waited see their first token one decode-run later than the first four
    assert min(r.ttft[4:]) > max(r.ttft[:4]) + 18 * cal.step_seconds(0, 0, 4, 4 * 26)


def test_deterministic_for_the_same_load():
    cal = fit_cpu_step_model(*model_steps(), 16384, "synthetic")
    load = [(0.3 * i, 8 + 13 * i % 100, 4 + 7 * i % 30) for i in range(40)]
    a = replay_engine(cal, load, 4, 128, [0.25 * i for i in range(80)])
    b = replay_engine(cal, load, 4, 128, [0.25 * i for i in range(80)])
    assert a == b


def test_client_counts_every_token_of_a_chunk_that_carries_several():
    # a token whose text is still empty (half a UTF-8 character) rides in the next chunk: 2 tokens after 0.2 s
    # are two inter-token latencies of 0.1 s, not one of 0.2 s (what counting chunks reported)
    chunks = [(1.0, 1), (1.1, 1), (1.3, 2), (1.4, 1)]
    assert token_gaps(chunks) == pytest.approx([0.1, 0.1, 0.1, 0.1])
