"""One engine, one load, no fleet: what the simulator predicts a single server does with a list of requests.

bench/sim_vs_engine.py replays the same load against the real `shoal serve` and compares. The queue is sampled
as a Prometheus scrape of the engine's gauges would see it: the value at each sample time.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.sim.calibration import EngineCalibration
from shoal.sim.engine_model import SimEngine, SimRequest


@dataclass
class EngineReplay:
    ttft: list[float]  # per request, in load order
    itl: list[float]  # one per decoded token after the first
    waiting: list[int]  # num_requests_waiting at each sample time
    running: list[int]  # num_requests_running at each sample time


def replay_engine(cal: EngineCalibration, load: list[tuple[float, int, int]], max_num_seqs: int,
                  max_num_batched_tokens: int, sample_times: list[float]) -> EngineReplay:
    """load: (arrival s, prompt tokens, output tokens), sorted by arrival; sample_times sorted."""
    engine = SimEngine(cal, max_num_seqs, max_num_batched_tokens)
    reqs = [SimRequest(at, p, o) for at, p, o in load]
    itl: list[float] = []
    waiting: list[int] = []
    running: list[int] = []
    i, t = 0, 0.0

    def sample_until(end: float) -> None:  # the gauges hold their value between steps
        while len(waiting) < len(sample_times) and sample_times[len(waiting)] < end:
            waiting.append(engine.num_waiting)
            running.append(engine.num_running)

    while i < len(reqs) or not engine.idle:
        while i < len(reqs) and reqs[i].arrival <= t:
            engine.add(reqs[i])
            i += 1
        d = engine.begin_step()
        if d is None:
            sample_until(reqs[i].arrival)
            t = reqs[i].arrival
            continue
        sample_until(t + d)
        t += d
        result = engine.end_step(t, d)
        itl += [d] * result.decode_seqs
    sample_until(float("inf"))
    return EngineReplay([r.first_token_time - r.arrival for r in reqs], itl, waiting, running)
