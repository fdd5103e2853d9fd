"""One simulated hour under one policy: trace -> fleet -> score. Used by `shoal sim` and bench/autoscale.py."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from shoal.operator.planners import PlannerSpec
from shoal.sim.calibration import (
    DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS, H100_LLAMA_3_1_8B, EngineCalibration,
)
from shoal.sim.capacity import Capacity, measure_capacity
from shoal.sim.fleet import SimConfig, Simulation
from shoal.sim.policies import POLICIES, PolicyContext
from shoal.sim.trace import TraceRequest, load_trace, per_minute_rate, scale_trace, with_warmup

WARMUP_S = 1200.0


@dataclass(frozen=True)
class Scenario:
    trace_path: str
    rate_scale: float
    slo_ttft_s: float
    slo_itl_s: float
    seed: int = 0
    cal: EngineCalibration = H100_LLAMA_3_1_8B
    max_replicas: int = 32
    warmup_s: float = WARMUP_S

    def __post_init__(self) -> None:
        if self.slo_ttft_s <= 0 or self.slo_itl_s <= 0:
            raise ValueError("--slo-ttft-ms and --slo-itl-ms must be > 0")
        if not Path(self.trace_path).is_file():
            raise ValueError(f"--trace {self.trace_path}: no such file")

    def config(self) -> SimConfig:
        return SimConfig(self.cal, self.slo_ttft_s, self.slo_itl_s, DEFAULT_MAX_NUM_SEQS,
                         DEFAULT_MAX_NUM_BATCHED_TOKENS)


@dataclass
class Prepared:
    scenario: Scenario
    trace: list[TraceRequest]  # scaled, with warm-up before t = 0
    score_end: float
    capacity: Capacity
    context: PolicyContext


def prepare(sc: Scenario, capacity: Capacity | None = None, probe_s: float = 600.0) -> Prepared:
    raw = load_trace(sc.trace_path)
    cfg = sc.config()
    cap = capacity or measure_capacity(cfg, raw, seed=sc.seed, duration_s=probe_s)
    scaled = scale_trace(raw, sc.rate_scale, sc.seed)
    rates = per_minute_rate(scaled)
    spec = PlannerSpec(min_replicas=1, max_replicas=sc.max_replicas, ttft_slo_s=sc.slo_ttft_s,
                       itl_slo_s=sc.slo_itl_s, pod_start_s=sc.cal.pod_start_delay_s,
                       max_num_seqs_cap=DEFAULT_MAX_NUM_SEQS, max_num_batched_tokens_cap=DEFAULT_MAX_NUM_BATCHED_TOKENS)
    warmup = min(sc.warmup_s, scaled[-1].time)
    ctx = PolicyContext(spec, cap.rate_rps, cap.concurrency, tuple(rates), warmup)
    return Prepared(sc, with_warmup(scaled, warmup), scaled[-1].time, cap, ctx)


def run_policy(p: Prepared, name: str) -> dict:
    if name not in POLICIES:
        raise ValueError(f"--policy {name!r}: choose one of {', '.join(POLICIES)}")
    policy = POLICIES[name](p.context)
    sim = Simulation(p.scenario.config(), p.trace, policy, p.score_end).run()
    s = sim.scorer.summary
    fleet = sim.fleet
    return {
        "policy": name,
        "attainment": s["attainment"],
        "ttft_attainment": s["ttft_attainment"],
        "itl_attainment": s["itl_attainment"],
        "gpu_hours": s["gpu_hours"],
        "goodput_rps": s["goodput_rps"],
        "goodput_fraction": s["goodput_fraction"],
        "requests": s["requests"],
        "scale_events": len(fleet.scale_events),
        "tune_events": sum(1 for e in fleet.tune_events if e[0] >= 0),
        "tune_events_warmup": sum(1 for e in fleet.tune_events if e[0] < 0),
        "windows": s["windows"],
        "timeline": sim.timeline,
        "scale_log": [{"t": t, "from": a, "to": b, "reason": r} for t, a, b, r in fleet.scale_events],
        "tune_log": [{"t": t, "max_num_seqs": a, "max_num_batched_tokens": b, "reason": r}
                     for t, a, b, r in fleet.tune_events if t >= 0],
        "initial_limits_at_t0": _limits_at(fleet.tune_events, 0.0, p.context.spec),
    }


def _limits_at(events, t: float, spec: PlannerSpec) -> dict:
    limits = (spec.max_num_seqs_cap, spec.max_num_batched_tokens_cap)
    for when, seqs, tokens, _ in events:
        if when <= t:
            limits = (seqs, tokens)
    return {"max_num_seqs": limits[0], "max_num_batched_tokens": limits[1]}


def rate_scale_for_peak(trace_path: str, replicas_at_peak: int, capacity: Capacity) -> float:
    """The rate scale at which the trace's busiest minute needs `replicas_at_peak` replicas at default limits."""
    peak = max(per_minute_rate(load_trace(trace_path))[:-1] or [1.0])
    return math.ceil(100 * replicas_at_peak * capacity.rate_rps / peak) / 100
