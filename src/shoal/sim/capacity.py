"""How much load one replica carries inside the SLO, measured on the simulated engine itself.

The oracle and the static policies size the fleet with it; the rate scale is chosen from it so that the trace's
peak minute needs a given number of replicas. Definition: the highest Poisson arrival rate (lengths drawn from the
trace) at which every 1-minute window of a 10-minute run on one replica meets both SLOs, at the given limits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from shoal.sim.fleet import Action, SimConfig, Simulation
from shoal.sim.trace import TraceRequest


@dataclass(frozen=True)
class Capacity:
    rate_rps: float
    concurrency: float  # mean outstanding requests per replica at that rate


class _OneReplica:
    name = "one-replica"
    period_s = 1.0
    phase_s = 0.0
    samples_every_second = False

    def __init__(self) -> None:
        self.outstanding: list[int] = []

    def initial_replicas(self) -> int:
        return 1

    def observe(self, t, fleet) -> None:
        pass

    def control(self, t, fleet) -> Action:
        if t >= 60:
            self.outstanding.append(sum(r.outstanding for r in fleet.live()))
        return Action()


def poisson_load(lengths: list[TraceRequest], rate: float, duration_s: float, seed: int) -> list[TraceRequest]:
    rng = random.Random(seed)
    out, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= duration_s:
            return out
        src = rng.choice(lengths)
        out.append(TraceRequest(t, src.prompt_tokens, src.output_tokens))


def run_one_replica(cfg: SimConfig, lengths, rate: float, duration_s: float, seed: int):
    trace = poisson_load(lengths, rate, duration_s, seed)
    policy = _OneReplica()
    sim = Simulation(cfg, trace, policy, score_end=duration_s).run()
    concurrency = sum(policy.outstanding) / max(len(policy.outstanding), 1)
    return sim.scorer.summary, concurrency


def measure_capacity(cfg: SimConfig, lengths, seed: int = 0, duration_s: float = 600.0) -> Capacity:
    lo, hi = 0.1, 64.0
    best = Capacity(lo, 0.0)
    for _ in range(10):
        mid = (lo * hi) ** 0.5
        summary, conc = run_one_replica(cfg, lengths, mid, duration_s, seed)
        if summary["attainment"] >= 1.0:
            lo, best = mid, Capacity(mid, conc)
        else:
            hi = mid
        if hi / lo < 1.03:
            break
    return best
