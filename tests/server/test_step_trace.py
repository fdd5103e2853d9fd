"""SHOAL_ENGINE_TRACE: the engine child records its loop per iteration (what bench/serve_overhead.py summarises)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from shoal.engine import SamplingParams
from shoal.engine.server.engine_process import EngineProcess
from shoal.engine.server.step_trace import COLUMNS, ENV, load

ROOT = Path(__file__).resolve().parents[2]


async def test_the_engine_child_writes_one_row_per_step_when_asked(tiny_model_dir, tmp_path, monkeypatch):
    path = tmp_path / "trace.json"
    monkeypatch.setenv(ENV, str(path))  # the spawned child reads its environment at start
    engine = EngineProcess(tiny_model_dir, max_num_seqs=4)
    await engine.start()
    try:
        outputs = [o async for o in engine.generate("r1", [5, 6, 7], SamplingParams(max_tokens=6, ignore_eos=True))]
    finally:
        await engine.shutdown()
    assert outputs[-1].finished and len(outputs[-1].token_ids) == 6
    rows = load(str(path))
    assert set(rows[0]) == set(COLUMNS)
    # a prefill step, then decodes: every step that ran the one request is there, with time spent stepping
    assert len(rows) >= 6
    assert all(r["num_running"] == 1 and r["step_s"] > 0 and r["send_s"] >= 0 for r in rows[:5])
    assert all(0 <= r["device_wait_s"] <= r["step_s"] and r["idle_s"] >= 0 for r in rows)
    # the prompt's 3 tokens computed in the first step, plus its first token read back (on CPU, in the same step)
    assert rows[0]["num_tokens"] == 4 and all(r["num_tokens"] == 1 for r in rows[1:5])
    assert [r["wall_start"] for r in rows] == sorted(r["wall_start"] for r in rows)


async def test_without_the_variable_nothing_is_written(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    engine = EngineProcess(tiny_model_dir, max_num_seqs=4)
    await engine.start()
    try:
        [o async for o in engine.generate("r1", [5, 6], SamplingParams(max_tokens=2, ignore_eos=True))]
    finally:
        await engine.shutdown()
    assert list(tmp_path.iterdir()) == []


def test_the_benchmark_summarises_one_run_of_the_trace():
    spec = importlib.util.spec_from_file_location("serve_overhead", ROOT / "bench" / "serve_overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    start = 100.0
    rows = [{"wall_start": start + 0.010 + 0.002 * i, "idle_s": 0.0, "commands_s": 0.0001, "step_s": 0.0015,
             "device_wait_s": 0.0005, "send_s": 0.0002, "num_running": min(64, 16 * (i + 1)), "num_tokens": 64}
            for i in range(11)]
    got = module.trace_summary(rows, start, full=64)
    assert got["steps"] == 11
    assert abs(got["ms_per_iteration"] - 2.0) < 1e-6
    assert got["step_ms"] == 1.5 and got["send_ms"] == 0.2 and got["device_wait_ms"] == 0.5
    assert got["steps_at_full_batch"] == 8  # from the 4th step on
    assert got["first_step_ms"] == 10.0 and got["full_batch_ms"] == 16.0
    assert got["host_ms_pcts"] == [1.3, 1.3, 1.3, 1.3] and got["host_bound_steps"] == 0
    assert module.trace_summary([], start, full=64) == {"steps": 0}
    # an iteration that slept until the run's first command belongs to that run, not to the one before
    idle = {**rows[0], "wall_start": start - 5.0, "idle_s": 5.004}
    assert module.in_window([idle, *rows], start, start + 1.0) == [idle, *rows]
    assert module.in_window([idle, *rows], start - 10.0, start - 1.0) == []
