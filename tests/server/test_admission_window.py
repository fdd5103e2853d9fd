"""An idle engine child gathers a burst of requests for one prefill step (engine_process.gather_burst)."""

from __future__ import annotations

import asyncio

from shoal.engine import SamplingParams
from shoal.engine.server.engine_process import EngineProcess, gather_burst
from shoal.engine.server.step_trace import ENV, load


class Arrivals:
    """A command pipe whose commands arrive at given times of a fake clock that waiting advances."""

    def __init__(self, arrivals: list[tuple[float, tuple]]) -> None:
        self.items, self.now = list(arrivals), 0.0

    def poll(self, wait: float) -> bool:
        if self.items and self.items[0][0] <= self.now + wait:
            self.now = max(self.now, self.items[0][0])
            return True
        self.now += wait
        return False

    def recv(self) -> tuple:
        return self.items.pop(0)[1]

    def clock(self) -> float:
        return self.now


def add(i: int) -> tuple:
    return ("add", i, [1], None, 0.0)


def test_requests_within_the_window_of_each_other_are_taken_together():
    pipe = Arrivals([(0.001 * i, add(i)) for i in range(1, 6)] + [(0.050, add(9))])  # 1 ms apart, then a gap
    batch = [add(0)]
    assert gather_burst(pipe, batch, window_s=0.002, max_adds=64, clock=pipe.clock) == 5
    assert [c[1] for c in batch] == [0, 1, 2, 3, 4, 5]
    assert pipe.now < 0.008  # gave up one quiet window after the last, long before the late request
    assert pipe.recv() == add(9)  # left in the pipe for the next step


def test_gathering_stops_at_the_batch_limit_and_at_25_windows():
    steady = Arrivals([(0.001 * i, add(i)) for i in range(1, 200)])  # one every ms, for ever
    batch = [add(0)]
    gather_burst(steady, batch, window_s=0.002, max_adds=8, clock=steady.clock)
    assert len(batch) == 8  # a full batch steps at once
    steady, batch = Arrivals([(0.001 * i, add(i)) for i in range(1, 200)]), [add(0)]
    gather_burst(steady, batch, window_s=0.002, max_adds=1000, clock=steady.clock)
    assert 50 <= len(batch) <= 52 and steady.now <= 0.0501  # 25 windows of 2 ms in all, a request a ms


def test_a_zero_window_takes_nothing_more():
    pipe = Arrivals([(0.0, add(1))])
    assert gather_burst(pipe, [add(0)], window_s=0.0, max_adds=64, clock=pipe.clock) == 0


async def first_step_batch(model_dir, tmp_path, monkeypatch, window_s: float) -> int:
    """Requests 50 ms apart into an idle engine child: how many ran in its first step."""
    path = tmp_path / f"trace-{window_s}.json"
    monkeypatch.setenv(ENV, str(path))
    engine = EngineProcess(model_dir, max_num_seqs=8, admission_window_s=window_s)
    await engine.start()
    params = SamplingParams(max_tokens=4, ignore_eos=True)

    async def one(i: int) -> int:
        await asyncio.sleep(0.05 * i)
        outputs = [o async for o in engine.generate(f"r{i}", [5 + i, 6, 7], params)]
        return len(outputs[-1].token_ids)

    try:
        assert await asyncio.gather(*(one(i) for i in range(4))) == [4] * 4
    finally:
        await engine.shutdown()
    return load(str(path))[0]["num_running"]


async def test_an_idle_engine_child_runs_a_burst_in_one_first_step(tiny_model_dir, tmp_path, monkeypatch):
    assert await first_step_batch(tiny_model_dir, tmp_path, monkeypatch, window_s=0.5) == 4
    assert await first_step_batch(tiny_model_dir, tmp_path, monkeypatch, window_s=0.0) < 4
