"""Scaling policies compared in the simulator: Shoal's planners and the autoscalers in use today.

Every baseline runs the engines at their default batch limits (maxNumSeqs 256, maxNumBatchedTokens 8192), as
those stacks do. Parameters are each project's documented defaults, noted beside each class.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

from shoal.operator.planners import (
    BatchState, PlannerSpec, ReplicaState, plan_replicas, tune_batch_limits,
)
from shoal.sim.fleet import Action, Fleet


@dataclass(frozen=True)
class PolicyContext:
    spec: PlannerSpec
    capacity_rps: float  # one replica's sustainable rate at default limits (measured by shoal.sim.capacity)
    concurrency_at_capacity: float  # outstanding requests per replica at that rate
    minute_rates: tuple[float, ...]  # scored minutes' arrival rates (requests/s)
    warmup_s: float

    def rate_at(self, t: float) -> float:
        m = int((t + self.warmup_s) // 60) if t < 0 else int(t // 60)  # the warm-up replays the first minutes
        return self.minute_rates[min(max(m, 0), len(self.minute_rates) - 1)]

    def needed(self, rate: float) -> int:
        return max(self.spec.min_replicas, math.ceil(rate / self.capacity_rps - 1e-9))


class Policy:
    name = "policy"
    period_s = 15.0
    phase_s = 7.5  # ticks fall between scrapes, as an operator's timer and Prometheus are not aligned
    samples_every_second = False

    def __init__(self, ctx: PolicyContext) -> None:
        self.ctx = ctx

    def initial_replicas(self) -> int:
        return self.ctx.needed(self.ctx.rate_at(-self.ctx.warmup_s))

    def observe(self, t: float, fleet: Fleet) -> None:  # once a second, for policies that sample that often
        pass

    def control(self, t: float, fleet: Fleet) -> Action:
        raise NotImplementedError


class ShoalPolicy(Policy):
    """The operator's planners, called exactly as autoscaler.py calls them."""

    def __init__(self, ctx: PolicyContext, tuning: bool = True) -> None:
        super().__init__(ctx)
        self.name = "shoal" if tuning else "shoal-no-tuning"
        self.spec = replace(ctx.spec, batch_tuning=tuning)
        self.rstate = ReplicaState()
        self.bstate = BatchState.initial(self.spec)

    def control(self, t: float, fleet: Fleet) -> Action:
        snap = fleet.snapshot(t)
        d = plan_replicas(snap, self.rstate, self.spec)
        b = tune_batch_limits(snap, self.bstate, self.spec)
        self.rstate, self.bstate = d.state, b.state
        return Action(d.replicas, (b.state.max_num_seqs, b.state.max_num_batched_tokens),
                      d.reason if not b.changed else f"{d.reason}; {b.reason}")


class StaticPolicy(Policy):
    def __init__(self, ctx: PolicyContext, peak: bool) -> None:
        super().__init__(ctx)
        self.name = "static-peak" if peak else "static-mean"
        rates = ctx.minute_rates
        self.n = max(ctx.needed(r) for r in rates) if peak else ctx.needed(sum(rates) / len(rates))

    def initial_replicas(self) -> int:
        return self.n

    def control(self, t: float, fleet: Fleet) -> Action:
        return Action(self.n)


class OraclePolicy(Policy):
    """Perfect foresight, instant starts: each minute exactly what that minute's load needs at default limits."""

    name = "oracle"
    period_s = 60.0
    phase_s = 0.0

    def control(self, t: float, fleet: Fleet) -> Action:
        return Action(self.ctx.needed(self.ctx.rate_at(t + 1e-6)), instant_start=True)


class KpaPolicy(Policy):
    """Knative KPA: concurrency target x 70% utilisation, 60 s stable / 6 s panic windows, panic at 200%,
    2 s tick, max scale-down rate 2. The target is a replica's concurrency at capacity (a well-tuned KPA)."""

    name = "kpa"
    period_s = 2.0
    phase_s = 0.5
    samples_every_second = True

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        self.target = 0.7 * ctx.concurrency_at_capacity
        self.samples: deque[tuple[float, float]] = deque()
        self.panic_until = -math.inf

    def observe(self, t: float, fleet: Fleet) -> None:
        self.samples.append((t, sum(r.outstanding for r in fleet.ready())))
        while self.samples and t - self.samples[0][0] >= 60.0:
            self.samples.popleft()

    def control(self, t: float, fleet: Fleet) -> Action:
        if not self.samples:
            return Action()
        stable = [c for s, c in self.samples]
        panic = [c for s, c in self.samples if t - s < 6.0] or stable[-1:]
        want_stable = math.ceil(sum(stable) / len(stable) / self.target)
        want_panic = math.ceil(sum(panic) / len(panic) / self.target)
        current, ready = len(fleet.live()), max(len(fleet.ready()), 1)
        if want_panic >= 2 * ready:
            self.panic_until = t + 60.0
        if t < self.panic_until:
            want = max(want_panic, current)
        else:
            want = max(want_stable, math.ceil(current / 2))
        return Action(_clamp(want, self.ctx.spec))


class KedaQueuePolicy(Policy):
    """KEDA Prometheus trigger `sum(num_requests_waiting)` threshold 5 (vLLM production-stack's default), i.e. an
    HPA with AverageValue 5: desired = ceil(waiting / 5), 10% tolerance, up max(100%, 4 pods) per 15 s,
    300 s scale-down stabilization."""

    name = "keda-queue"

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        self.recs: deque[tuple[float, int]] = deque()

    def control(self, t: float, fleet: Fleet) -> Action:
        snap = fleet.snapshot(t)
        current = len(fleet.live())
        if snap.waiting is None:
            return Action()
        ratio = snap.waiting / (5.0 * max(current, 1))
        want = current if abs(ratio - 1) <= 0.1 else math.ceil(snap.waiting / 5.0)
        want = min(want, max(2 * current, current + 4))
        want = _clamp(want, self.ctx.spec)
        self.recs.append((t, want))
        while t - self.recs[0][0] > 300.0:
            self.recs.popleft()
        if want < current:
            want = min(current, max(n for _, n in self.recs))
        return Action(want)


class WvaPolicy(Policy):
    """llm-d workload-variant-autoscaler, saturation mode: any replica with KV >= 0.8 or queue >= 5 -> one more
    replica per step; one fewer only when the load spread over one replica less stays under both thresholds
    (KV x n/(n-1) < 0.8, nothing waiting) for a full 300 s."""

    name = "wva"

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        self.calm_since: float | None = None

    def control(self, t: float, fleet: Fleet) -> Action:
        ready = fleet.ready()
        kv = [r.series.last(t, "kv") for r in ready]
        waiting = [r.series.last(t, "waiting") for r in ready]
        if not ready or None in kv or None in waiting:
            return Action()
        current = len(fleet.live())
        if max(kv) >= 0.8 or max(waiting) >= 5:
            self.calm_since = None
            return Action(_clamp(current + 1, self.ctx.spec))
        n = len(ready)
        if n > 1 and sum(waiting) == 0 and sum(kv) / (n - 1) < 0.8:
            self.calm_since = t if self.calm_since is None else self.calm_since
            if t - self.calm_since >= 300.0:
                self.calm_since = t
                return Action(_clamp(current - 1, self.ctx.spec))
        else:
            self.calm_since = None
        return Action()


def _clamp(n: int, spec: PlannerSpec) -> int:
    return min(max(n, spec.min_replicas), spec.max_replicas)


POLICIES = {
    "shoal": lambda ctx: ShoalPolicy(ctx, tuning=True),
    "shoal-no-tuning": lambda ctx: ShoalPolicy(ctx, tuning=False),
    "static-peak": lambda ctx: StaticPolicy(ctx, peak=True),
    "static-mean": lambda ctx: StaticPolicy(ctx, peak=False),
    "kpa": KpaPolicy,
    "keda-queue": KedaQueuePolicy,
    "wva": WvaPolicy,
    "oracle": OraclePolicy,
}
