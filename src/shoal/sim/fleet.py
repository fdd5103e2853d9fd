"""Discrete-event replay of a trace against simulated replicas, under one scaling policy.

Events: request arrivals, engine step ends, pods becoming ready, Prometheus scrapes (every 15 s) and policy
ticks. Requests go to the ready replica with the fewest outstanding requests (what LLM-aware routers do); a
replica scaled away stops receiving, finishes what it holds, and costs GPU time until then. Deterministic: the
only randomness is in the trace scaling, which takes the seed.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from shoal.operator.planners import MetricsSnapshot
from shoal.sim import promql
from shoal.sim.calibration import EngineCalibration
from shoal.sim.engine_model import SimEngine, SimRequest
from shoal.sim.scoring import Scorer
from shoal.sim.trace import TraceRequest

STARTING, READY, DRAINING, GONE = "starting", "ready", "draining", "gone"


@dataclass
class SimConfig:
    cal: EngineCalibration
    slo_ttft_s: float
    slo_itl_s: float
    max_num_seqs: int
    max_num_batched_tokens: int
    scrape_interval_s: float = 15.0
    window_s: float = 60.0
    tail_s: float = 600.0  # after the last arrival, let in-flight requests finish (not scored for cost)


@dataclass
class Action:
    replicas: int | None = None
    limits: tuple[int, int] | None = None  # (max_num_seqs, max_num_batched_tokens)
    reason: str = ""
    instant_start: bool = False  # the oracle's pods are ready at once


class Replica:
    def __init__(self, rid: int, cfg: SimConfig, created: float, limits: tuple[int, int]) -> None:
        self.id = rid
        self.state = STARTING
        self.created = created
        self.gone_at: float | None = None
        self.engine = SimEngine(cfg.cal, *limits)
        self.busy = False
        self.series = promql.ScrapeSeries()
        self.ttft = promql.Histogram(promql.TTFT_BUCKETS)
        self.itl = promql.Histogram(promql.ITL_BUCKETS)

    @property
    def outstanding(self) -> int:
        return self.engine.num_running + self.engine.num_waiting

    def scrape(self, t: float) -> None:
        e = self.engine
        self.series.add(t, {"ttft": self.ttft.snapshot(), "itl": self.itl.snapshot(), "arrivals": sum(self.ttft.counts),
                            "waiting": e.num_waiting, "running": e.num_running, "kv": e.kv_usage()})


@dataclass
class Fleet:
    cfg: SimConfig
    replicas: list[Replica] = field(default_factory=list)
    limits: tuple[int, int] = (0, 0)
    scale_events: list[tuple[float, int, int, str]] = field(default_factory=list)
    tune_events: list[tuple[float, int, int, str]] = field(default_factory=list)

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.state in (STARTING, READY)]

    def ready(self) -> list[Replica]:
        return [r for r in self.replicas if r.state == READY]

    def snapshot(self, t: float) -> MetricsSnapshot:
        """What the operator's Prometheus queries return (DESIGN's PromQL over the scraped series)."""
        scraped = [r.series for r in self.replicas if r.state != STARTING and r.series.samples]
        ready = self.ready()

        def gauge(key: str, agg):
            vals = [r.series.last(t, key) for r in ready]
            vals = [v for v in vals if v is not None]
            return agg(vals) if vals else None

        w = self.cfg.window_s
        return MetricsSnapshot(
            time=t,
            ttft_p95_s=promql.quantile_over(scraped, t, w, "ttft", promql.TTFT_BUCKETS),
            itl_p95_s=promql.quantile_over(scraped, t, w, "itl", promql.ITL_BUCKETS),
            waiting=gauge("waiting", sum),
            running=gauge("running", sum),
            kv_usage=gauge("kv", lambda v: sum(v) / len(v)),
            arrival_rate=promql.sum_rates(scraped, t, w, "arrivals"),
            ready_replicas=len(ready),
            current_replicas=len(self.live()),
        )


class Simulation:
    def __init__(self, cfg: SimConfig, trace: list[TraceRequest], policy, score_end: float) -> None:
        self.cfg = cfg
        self.trace = trace
        self.policy = policy
        self.fleet = Fleet(cfg, limits=(cfg.max_num_seqs, cfg.max_num_batched_tokens))
        self.scorer = Scorer(cfg.slo_ttft_s, cfg.slo_itl_s, score_end)
        self.score_end = score_end
        self._events: list = []
        self._order = itertools.count()
        self._ids = itertools.count()
        self.timeline: list[dict] = []
        self._gateway_queue: list[SimRequest] = []

    def _push(self, t: float, kind: str, obj=None) -> None:
        heapq.heappush(self._events, (t, next(self._order), kind, obj))

    def run(self) -> Simulation:
        start = self.trace[0].time
        for _ in range(self.policy.initial_replicas()):
            self._add_replica(start, instant=True)
        for i, req in enumerate(self.trace):
            self._push(req.time, "arrival", i)
        t = start
        while t <= self.score_end:
            self._push(t, "scrape")
            t += self.cfg.scrape_interval_s
        t = start + self.policy.phase_s
        while t <= self.score_end:
            self._push(t, "control")
            t += self.policy.period_s
        if getattr(self.policy, "samples_every_second", False):
            self._push(start, "tick")
        hard_end = self.score_end + self.cfg.tail_s
        while self._events:
            t, _, kind, obj = heapq.heappop(self._events)
            if t > hard_end:
                break
            getattr(self, "_on_" + kind)(t, obj)
        for r in self.fleet.replicas:
            if r.gone_at is None:
                r.gone_at = min(t, hard_end)
        self.scorer.finish(self.fleet.replicas)
        return self

    # --- events ------------------------------------------------------------------------------------------------------
    def _on_arrival(self, t: float, i: int) -> None:
        tr = self.trace[i]
        req = SimRequest(tr.time, tr.prompt_tokens, tr.output_tokens)
        self.scorer.arrived(req)
        ready = self.fleet.ready()
        if not ready:  # nowhere to go: it waits at the gateway for the first ready replica
            self._gateway_queue.append(req)
            return
        target = min(ready, key=lambda r: (r.outstanding, r.id))
        self._enqueue(target, req, t)

    def _enqueue(self, replica: Replica, req: SimRequest, t: float) -> None:
        replica.engine.add(req)
        if not replica.busy:
            self._start_step(replica, t)

    def _start_step(self, replica: Replica, t: float) -> None:
        duration = replica.engine.begin_step()
        if duration is None:
            replica.busy = False
            if replica.state == DRAINING:
                replica.state, replica.gone_at = GONE, t
            return
        replica.busy = True
        self._push(t + duration, "step", (replica, duration))

    def _on_step(self, t: float, payload) -> None:
        replica, duration = payload
        res = replica.engine.end_step(t, duration)
        if res.decode_seqs:
            replica.itl.observe(duration, res.decode_seqs)
            self.scorer.itl(t, duration, res.decode_seqs)
        for req in res.first_tokens:
            replica.ttft.observe(t - req.arrival)
            self.scorer.first_token(req, t)
        for req in res.finished:
            self.scorer.finished(req)
        self._start_step(replica, t)

    def _on_ready(self, t: float, replica: Replica) -> None:
        if replica.state != STARTING:
            return
        replica.state = READY
        queued, self._gateway_queue = self._gateway_queue, []
        for req in queued:
            self._enqueue(replica, req, t)

    def _on_scrape(self, t: float, _) -> None:
        for r in self.fleet.replicas:
            if r.state in (READY, DRAINING):
                r.scrape(t)

    def _on_tick(self, t: float, _) -> None:
        self.policy.observe(t, self.fleet)
        if t + 1.0 <= self.score_end:
            self._push(t + 1.0, "tick")

    def _on_control(self, t: float, _) -> None:
        act = self.policy.control(t, self.fleet)
        fleet = self.fleet
        if act.limits is not None and act.limits != fleet.limits:
            fleet.limits = act.limits
            for r in fleet.live():
                r.engine.max_num_seqs, r.engine.max_num_batched_tokens = act.limits
            fleet.tune_events.append((t, *act.limits, act.reason))  # warm-up ones too; run.py splits them
        if act.replicas is not None:
            self._scale_to(t, act.replicas, act.instant_start, act.reason)
        snap = fleet.snapshot(t)
        if t >= 0:
            self.timeline.append({
                "t": t, "replicas": len(fleet.live()), "ready": len(fleet.ready()),
                "arrival_rate": snap.arrival_rate, "ttft_p95_s": snap.ttft_p95_s, "itl_p95_s": snap.itl_p95_s,
                "max_num_seqs": fleet.limits[0], "max_num_batched_tokens": fleet.limits[1],
            })

    def _scale_to(self, t: float, n: int, instant: bool, reason: str) -> None:
        live = self.fleet.live()
        if n == len(live):
            return
        if t >= 0:
            self.fleet.scale_events.append((t, len(live), n, reason))
        for _ in range(n - len(live)):
            self._add_replica(t, instant)
        if n < len(live):  # starting pods go first, then the least loaded ready ones
            order = sorted(live, key=lambda r: (r.state == READY, r.outstanding, -r.id))
            for r in order[: len(live) - n]:
                if r.state == STARTING:
                    r.state, r.gone_at = GONE, t
                else:
                    r.state = DRAINING
                    if not r.busy:
                        r.state, r.gone_at = GONE, t

    def _add_replica(self, t: float, instant: bool) -> None:
        r = Replica(next(self._ids), self.cfg, t, self.fleet.limits)
        self.fleet.replicas.append(r)
        delay = 0.0 if instant else self.cfg.cal.pod_start_delay_s
        if delay == 0.0:
            self._on_ready(t, r)
        else:
            self._push(t + delay, "ready", r)
