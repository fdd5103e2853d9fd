"""Pure planners: how many replicas a service needs, and which batch limits its engines should run.

Both functions take (metrics snapshot, state, spec) and return a decision carrying the new state and a
human-readable reason. No I/O, no clock: the operator's timer, the fleet simulator and the tests call the same
code. docs/autoscaling.md explains the choices; in short:

- Replicas: a per-replica capacity (requests/s one replica serves inside the SLO) learned online from latency
  headroom while replicas are loaded, with a dead band: cut at once on a breach (once per metrics window), lowered
  when p95 nears the SLO, raised toward what the headroom suggests only when there is plenty of it, the further the
  nearer to the SLO that look was (less extrapolation). Load is forecast over the pod start time from the
  arrival-rate trend plus the queue, so scale-up starts before the SLO breaks; starting pods count as capacity;
  scale-down goes only as far as the highest forecast of the stabilization window needs (the HPA's idea, applied to
  the load), and back to the count the last scale-up left (at about the same capacity) only when that count also
  carries the forecasts' trend plus three of their scatters, so a noisy flat load cannot make it oscillate.
- Batch limits: a dead-band AIMD controller. ITL p95 near its SLO -> cut the token budget (long prefill chunks are
  what stretch a decode step), then the admission cap; TTFT near its SLO while ITL has room -> raise the budget;
  requests waiting with room on both -> raise the admission cap. The band's upper edge sits on an ITL histogram
  bucket bound: inside a bucket the p95 is interpolation, not measurement, and a band there is never reached.
- No data is not zero: any missing signal holds everything and says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

# Thresholds on the latency ratio (p95 / SLO) and gains. Why: docs/autoscaling.md, "Replica planner", "Batch tuner".
NEAR_SLO = 0.8  # the latency ratio (p95 / SLO) the capacity estimate aims to keep replicas under
COMFORTABLE = 0.5  # the estimate rises only below this, falls only above NEAR_SLO: a dead band against noise
HEADROOM_EXPONENT = 0.5  # latency is flat then steep in load: trust headroom only sublinearly
MIN_GAIN, MAX_GAIN = 0.75, 1.6  # bounds on one step's load-per-replica change the headroom may suggest
LOADED = 0.5  # learn upward only while replicas carry at least this fraction of the estimate
CAPACITY_CUT = 0.9  # the most near-SLO looks may lower the estimate per CAPACITY_CUT_PERIOD_S
# a rate per second, not per look: looks inside one 1-minute window see nearly the same data, and a loop ticking every
# 2 s (the e2e tests') compounded 0.9 thirty times over one stale window (0.9^30 = 0.04)
CAPACITY_CUT_PERIOD_S = 15.0  # the default control period, for which the cut is 0.9 a look as it always was
BREACH_CUT = 0.75
# the queries' rate/quantile window (prometheus.py's [1m]): a breach teaches the estimate once per window, since the
# looks after a cut see the same slow requests, while the pods that cut started become ready and lower the load
# per replica the next cut would be taken from
METRICS_WINDOW_S = 60.0
TARGET_UTILIZATION = 0.85  # plan replicas to run at this fraction of the learned capacity
TUNE_ITL_HIGH = 0.5  # keep ITL well inside its SLO: a smaller token budget costs TTFT little until saturation
TUNE_ITL_LOW = 0.3
# above this share of the SLO a band edge sits too near NEAR_SLO, where the replica planner takes ITL as its load
# signal: the two would answer the same breach, and the cuts only spread prefill over more steps
TUNE_ITL_HIGH_MAX = 0.65
# the engine's ITL histogram buckets (DESIGN: vLLM's); a p95 inside a bucket is interpolated, so the tuner's band
# edge goes on a bound: p95 >= a bound means >= 5% of tokens really waited that long
ITL_BUCKET_BOUNDS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                     40.0, 80.0)
TUNE_TTFT_HIGH = 0.7
# going back down to the count a scale-up left, the lower count must carry the window forecasts' trend line plus
# this many of their scatters about it (not just their peak), unless the capacity estimate has since risen by more
# than DOWN_CAPACITY_NOISE (then the step down is learning, not noise): docs/autoscaling.md, "Replica planner"
DOWN_NOISE_Z = 3.0
DOWN_CAPACITY_NOISE = 0.1
DOWN_MIN_LOOKS = 5  # fewer looks than this say too little about the scatter: the peak alone decides
QUEUE_DRAIN_S = 30.0  # waiting requests count as load to be served within this time
TREND_GAIN = 0.15  # EWMA weight of the newest arrival-rate slope


@dataclass(frozen=True)
class MetricsSnapshot:
    """One look at a service. None means no data (Prometheus down, slow, or the series are empty)."""

    time: float
    ttft_p95_s: float | None
    itl_p95_s: float | None
    waiting: float | None
    running: float | None
    kv_usage: float | None
    arrival_rate: float | None  # requests/s reaching the engines
    ready_replicas: int
    current_replicas: int  # replicas asked of the Deployment: ready + starting

    @property
    def idle(self) -> bool:
        """Nothing arrives and nothing waits: latency quantiles have no samples, and that is not missing data."""
        return self.arrival_rate == 0 and self.waiting == 0

    def missing(self) -> list[str]:
        names = ("waiting", "running", "arrival_rate") if self.idle else (
            "ttft_p95_s", "itl_p95_s", "waiting", "running", "arrival_rate")
        return [n for n in names if getattr(self, n) is None]

    def latency_ratio(self, spec: PlannerSpec) -> tuple[float, float]:
        """(TTFT p95 / SLO, ITL p95 / SLO); zero when idle."""
        if self.idle and (self.ttft_p95_s is None or self.itl_p95_s is None):
            return 0.0, 0.0
        return self.ttft_p95_s / spec.ttft_slo_s, self.itl_p95_s / spec.itl_slo_s


@dataclass(frozen=True)
class PlannerSpec:
    min_replicas: int
    max_replicas: int
    ttft_slo_s: float
    itl_slo_s: float
    scale_down_stabilization_s: float = 300.0
    pod_start_s: float = 60.0  # expected time from scale-up to a ready pod (forecast horizon)
    batch_tuning: bool = True
    max_num_seqs_cap: int = 256  # startup capacity: the tuner never goes above these
    max_num_batched_tokens_cap: int = 8192
    min_num_batched_tokens: int = 512
    min_num_seqs: int = 8
    tune_cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise ValueError("autoscaling.minReplicas must be >= 0")
        if self.max_replicas < max(self.min_replicas, 1):
            raise ValueError("autoscaling.maxReplicas must be >= minReplicas and >= 1")
        if self.ttft_slo_s <= 0 or self.itl_slo_s <= 0:
            raise ValueError("slo.ttftP95Ms and slo.itlP95Ms must be > 0")
        if self.min_num_batched_tokens > self.max_num_batched_tokens_cap:
            raise ValueError("engine.maxNumBatchedTokens must be >= the tuner's floor (512)")
        if self.min_num_seqs > self.max_num_seqs_cap:
            raise ValueError(f"batchTuning.minNumSeqs ({self.min_num_seqs}) must be <= engine.maxNumSeqs "
                             f"({self.max_num_seqs_cap})")

    @property
    def itl_band(self) -> tuple[float, float] | None:
        """The tuner's ITL band in seconds (cut at or above the first, raise below the second), or None when the
        histogram cannot resolve it: no bucket bound between TUNE_ITL_HIGH and TUNE_ITL_HIGH_MAX of the SLO."""
        high = next((b for b in ITL_BUCKET_BOUNDS if b >= TUNE_ITL_HIGH * self.itl_slo_s * (1 - 1e-9)), None)
        if high is None or high > TUNE_ITL_HIGH_MAX * self.itl_slo_s * (1 + 1e-9):
            return None
        return high, min(TUNE_ITL_LOW * self.itl_slo_s, high * TUNE_ITL_LOW / TUNE_ITL_HIGH)

    @property
    def tunes_batches(self) -> bool:
        return self.batch_tuning and self.itl_band is not None

    @classmethod
    def from_service_spec(cls, spec: dict) -> PlannerSpec:
        """Read an InferenceService spec (camelCase, as stored in the API)."""
        auto = spec.get("autoscaling") or {}
        slo = spec.get("slo") or {}
        engine = spec.get("engine") or {}
        seqs_cap = int(engine.get("maxNumSeqs", 256))
        tokens_cap = int(engine.get("maxNumBatchedTokens", 8192))
        tuning = spec.get("batchTuning") or {}
        return cls(
            min_replicas=int(auto.get("minReplicas", 1)),
            max_replicas=int(auto.get("maxReplicas", 8)),
            ttft_slo_s=float(slo.get("ttftP95Ms", 500)) / 1000,
            itl_slo_s=float(slo.get("itlP95Ms", 50)) / 1000,
            scale_down_stabilization_s=float(auto.get("scaleDownStabilizationSeconds", 300)),
            batch_tuning=bool(tuning.get("enabled", True)),
            max_num_seqs_cap=seqs_cap,
            max_num_batched_tokens_cap=tokens_cap,
            min_num_batched_tokens=min(512, tokens_cap),
            min_num_seqs=min(int(tuning.get("minNumSeqs", 8)), seqs_cap),
        )


# --- replicas ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaState:
    capacity_rps: float | None = None  # learned requests/s one replica serves inside the SLO
    rate_trend: float = 0.0  # d(arrival rate)/dt, requests/s per second, smoothed
    last_rate: float | None = None
    last_time: float | None = None
    recent_forecasts: tuple[tuple[float, float], ...] = ()  # (time, forecast requests/s), last window
    last_scale_time: float | None = None
    last_cut_time: float | None = None  # the last breach cut (absent in a status written before it existed)
    last_up_from: int | None = None  # the count the last scale-up left (absent in an older status: no margin)
    last_up_capacity: float | None = None  # the capacity estimate that scale-up was planned with

    def to_status(self) -> dict:
        d = asdict(self)
        d["recent_forecasts"] = [list(r) for r in self.recent_forecasts]
        return {_camel(k): v for k, v in d.items()}

    @classmethod
    def from_status(cls, status: dict | None) -> ReplicaState:
        if not status:
            return cls()
        d = {k: status.get(_camel(k)) for k in cls.__dataclass_fields__}
        recs = tuple((float(t), float(f)) for t, f in d.get("recent_forecasts") or ())
        return cls(
            capacity_rps=_opt_float(d["capacity_rps"]),
            rate_trend=float(d["rate_trend"] or 0.0),
            last_rate=_opt_float(d["last_rate"]),
            last_time=_opt_float(d["last_time"]),
            recent_forecasts=recs,
            last_scale_time=_opt_float(d["last_scale_time"]),
            last_cut_time=_opt_float(d["last_cut_time"]),
            last_up_from=None if d["last_up_from"] is None else int(d["last_up_from"]),
            last_up_capacity=_opt_float(d["last_up_capacity"]),
        )


@dataclass(frozen=True)
class ReplicaDecision:
    replicas: int
    reason: str
    state: ReplicaState
    limited: bool = False  # min/max clipped what the load asked for (condition ScalingLimited)
    metrics_available: bool = True


def plan_replicas(snap: MetricsSnapshot, state: ReplicaState, spec: PlannerSpec) -> ReplicaDecision:
    current = snap.current_replicas
    missing = snap.missing()
    if missing or snap.ready_replicas == 0:
        held, limited = _clamp(current, spec)
        why = f"missing {', '.join(missing)}" if missing else "no ready replica to measure"
        return ReplicaDecision(held, f"hold at {held}: no data ({why})", state, limited, metrics_available=False)

    ready = snap.ready_replicas
    rate = snap.arrival_rate
    per_replica = rate / ready
    if state.capacity_rps is None and per_replica <= 0:  # an idle fleet says nothing about what a replica carries
        held, limited = _clamp(current, spec)
        return ReplicaDecision(held, f"hold at {held}: no load yet to learn a replica's capacity from",
                               replace(state, last_rate=rate, last_time=snap.time), limited)
    ttft_ratio, itl_ratio = snap.latency_ratio(spec)
    ratio = max(ttft_ratio, itl_ratio)
    # while the tuner holds ITL inside the SLO, ITL says how the batch limits are set, not how loaded a replica
    # is; TTFT (queueing for the token budget) is then the load signal
    load_ratio = ttft_ratio if spec.tunes_batches and itl_ratio < NEAR_SLO else ratio
    trend = state.rate_trend
    if state.last_rate is not None and state.last_time is not None and snap.time > state.last_time:
        slope = (rate - state.last_rate) / (snap.time - state.last_time)
        trend = (1 - TREND_GAIN) * trend + TREND_GAIN * slope

    capacity = state.capacity_rps
    cut_time = state.last_cut_time
    # what the latency headroom says one replica could carry: sublinear in the headroom, bounded per step
    headroom_gain = min(max((NEAR_SLO / max(load_ratio, 1e-9)) ** HEADROOM_EXPONENT, MIN_GAIN), MAX_GAIN)
    suggested = per_replica * headroom_gain
    # latency says what a replica carries only while replicas are loaded: at light load a breach is a stale 1-minute
    # window holding a burst that has ended, or noise, and cutting to a fraction of a trickle collapses the estimate
    loaded = capacity is None or per_replica >= LOADED * capacity or snap.waiting >= ready
    if capacity is None:
        capacity, learned = max(suggested, 1e-3), "initial estimate"
    elif not loaded and load_ratio >= NEAR_SLO:
        learned = "capacity kept (light load: latency says nothing about capacity)"
    elif ratio >= 1.0 and state.last_cut_time is not None and snap.time - state.last_cut_time < METRICS_WINDOW_S:
        learned = "capacity kept (SLO breached, but this window already taught its cut)"
    elif ratio >= 1.0:
        capacity, learned = min(capacity, per_replica * BREACH_CUT), "SLO breached: capacity cut"
        cut_time = snap.time
    elif suggested < capacity and load_ratio >= NEAR_SLO:
        capacity, learned = max(suggested, capacity * _near_slo_cut(snap.time, state.last_time)), \
            "latency nears the SLO: capacity lowered"
    elif suggested > capacity and load_ratio < COMFORTABLE and per_replica >= LOADED * capacity \
            and snap.waiting < ready:
        capacity += _raise_weight(per_replica, suggested) * (suggested - capacity)
        learned = "room on both SLOs: capacity raised"
    else:
        learned = "capacity kept"
    capacity = max(capacity, 1e-3)

    horizon = spec.pod_start_s  # a pod asked for now helps this much later
    forecast = rate + max(trend, 0.0) * horizon + snap.waiting / QUEUE_DRAIN_S
    wanted = math.ceil(forecast / (capacity * TARGET_UTILIZATION) - 1e-9)
    if ratio >= 1.0 and current == ready and loaded:  # loaded breach with nothing on the way: at least one more now
        wanted = max(wanted, current + 1)
    wanted_clamped, limited = _clamp(wanted, spec)

    # scale down only as far as the highest forecast of the stabilization window needs, at today's capacity
    held = ""
    window = [(t, f) for t, f in state.recent_forecasts if snap.time - t < spec.scale_down_stabilization_s]
    window.append((snap.time, forecast))
    if wanted_clamped >= current:
        replicas = wanted_clamped
    else:
        peak = max(f for _, f in window)
        replicas = min(current, math.ceil(peak / (capacity * TARGET_UTILIZATION) - 1e-9))
        # back to (or below) the count the last scale-up left, at about the capacity that scale-up was planned with:
        # only if that count also carries where the next window's looks may reach (else 4 -> 5 -> 4 once a window)
        if state.last_up_from is not None and state.last_up_capacity is not None and \
                replicas <= state.last_up_from and capacity <= state.last_up_capacity * (1 + DOWN_CAPACITY_NOISE):
            by_peak = replicas
            replicas = min(current, math.ceil(_down_load(window) / (capacity * TARGET_UTILIZATION) - 1e-9))
            if replicas > by_peak:
                held = f"; {replicas} not {by_peak}: the forecast's noise could take {by_peak} back up"
    replicas, clipped = _clamp(replicas, spec)
    limited = limited or clipped

    detail = (
        f"arrivals {rate:.2f}/s (forecast {forecast:.2f}/s), capacity {capacity:.2f}/s per replica ({learned}), "
        f"p95/SLO {ratio:.2f}, waiting {snap.waiting:.0f}{held}"
    )
    if replicas > current:
        reason = f"scale up {current} -> {replicas}: {detail}"
    elif replicas < current:
        reason = f"scale down {current} -> {replicas}: {detail}"
    else:
        reason = f"hold at {current}: {detail}"
    new_state = ReplicaState(
        capacity_rps=capacity,
        rate_trend=trend,
        last_rate=rate,
        last_time=snap.time,
        recent_forecasts=tuple(window),
        last_scale_time=snap.time if replicas != current else state.last_scale_time,
        last_cut_time=cut_time,
        last_up_from=current if replicas > current else state.last_up_from,
        last_up_capacity=capacity if replicas > current else state.last_up_capacity,
    )
    return ReplicaDecision(replicas, reason, new_state, limited)


def _down_load(window: list[tuple[float, float]]) -> float:
    """The load a lower replica count must carry before the planner scales down to it: the window's peak forecast,
    or the forecast's trend line at the newest look plus DOWN_NOISE_Z of the window's own scatter about that line,
    whichever is higher. A scale-up answers one look above a boundary, so a scale-down must clear where the next
    window's looks may reach, not just where this window's did: on a flat load with the boundary inside the
    forecast's noise the peak alone lets the count step down and back up once per window (docs/autoscaling.md)."""
    peak = max(f for _, f in window)
    n = len(window)
    if n < DOWN_MIN_LOOKS:
        return peak
    ts = [t for t, _ in window]
    fs = [f for _, f in window]
    mt, mf = sum(ts) / n, sum(fs) / n
    stt = sum((t - mt) ** 2 for t in ts)
    slope = sum((t - mt) * (f - mf) for t, f in window) / stt if stt > 0 else 0.0
    resid = [f - (mf + slope * (t - mt)) for t, f in window]
    scatter = math.sqrt(sum(r * r for r in resid) / (n - 2))
    return max(peak, mf + slope * (ts[-1] - mt) + DOWN_NOISE_Z * scatter)


def _raise_weight(carried: float, suggested: float) -> float:
    """How far one look moves the estimate toward a higher suggestion: the share of the suggestion the replicas
    really carried, squared as the suggestion took the square root of the headroom. Inside the gain bounds that is
    p95/SLO over NEAR_SLO: a look measured near the frontier it points at is nearly a measurement and is taken
    almost whole; one far below it is mostly extrapolation and moves the estimate a little (a fixed 0.3 before,
    which left an over-provisioned fleet learning for an hour: docs/autoscaling.md)."""
    return min(1.0, carried / suggested) ** 2


def _near_slo_cut(now: float, last_time: float | None) -> float:
    """The factor one near-SLO look may cut the estimate by: CAPACITY_CUT per CAPACITY_CUT_PERIOD_S since the last
    look (a look after a longer gap cuts no more than one period's worth)."""
    periods = 1.0 if last_time is None else max(now - last_time, 0.0) / CAPACITY_CUT_PERIOD_S
    return CAPACITY_CUT ** (1.0 if periods > 1 - 1e-9 else periods)  # 14.999999999 s (float time sums): a period


def _clamp(n: int, spec: PlannerSpec) -> tuple[int, bool]:
    clamped = min(max(n, spec.min_replicas), spec.max_replicas)
    return clamped, clamped != n


# --- batch limits ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchState:
    max_num_seqs: int
    max_num_batched_tokens: int
    last_tune_time: float | None = None

    @classmethod
    def initial(cls, spec: PlannerSpec) -> BatchState:
        return cls(spec.max_num_seqs_cap, spec.max_num_batched_tokens_cap)

    def to_status(self) -> dict:
        """status.batch fields; `tunedAt` is the planner's clock (the operator adds lastTuneTime as RFC 3339)."""
        return {"maxNumSeqs": self.max_num_seqs, "maxNumBatchedTokens": self.max_num_batched_tokens,
                "tunedAt": self.last_tune_time}

    @classmethod
    def from_status(cls, status: dict | None, spec: PlannerSpec) -> BatchState:
        if not status or status.get("maxNumSeqs") is None:
            return cls.initial(spec)
        seqs = min(max(int(status["maxNumSeqs"]), 1), spec.max_num_seqs_cap)  # caps may have shrunk since
        tokens = min(max(int(status["maxNumBatchedTokens"]), 1), spec.max_num_batched_tokens_cap)
        return cls(seqs, tokens, _opt_float(status.get("tunedAt")))


@dataclass(frozen=True)
class BatchDecision:
    state: BatchState
    reason: str
    changed: bool = False


def tune_batch_limits(snap: MetricsSnapshot, state: BatchState, spec: PlannerSpec) -> BatchDecision:
    band = spec.itl_band
    if not spec.batch_tuning or band is None:
        initial = BatchState.initial(spec)
        changed = (initial.max_num_seqs, initial.max_num_batched_tokens) != (
            state.max_num_seqs, state.max_num_batched_tokens)
        why = "batch tuning disabled" if not spec.batch_tuning else (
            f"batch tuning off, startup limits held: the ITL histogram has no bucket bound between "
            f"{TUNE_ITL_HIGH:.0%} and {TUNE_ITL_HIGH_MAX:.0%} of the {spec.itl_slo_s * 1000:g} ms ITL SLO to tune against")
        return BatchDecision(replace(initial, last_tune_time=state.last_tune_time), why, changed)
    missing = snap.missing()
    if missing:
        return BatchDecision(state, f"hold: no data (missing {', '.join(missing)})")
    if state.last_tune_time is not None and snap.time - state.last_tune_time < spec.tune_cooldown_s:
        return BatchDecision(state, "hold: waiting for the last change to show in the metrics")
    ttft, itl = snap.latency_ratio(spec)
    itl_high, itl_low = (edge / spec.itl_slo_s for edge in band)
    seqs, tokens = state.max_num_seqs, state.max_num_batched_tokens
    ready = max(snap.ready_replicas, 1)
    # both cuts buy ITL with TTFT and replicas are sized on the larger ratio: cut only while ITL is that one
    itl_binds = itl >= itl_high and itl > ttft
    if itl_binds and tokens > spec.min_num_batched_tokens:
        tokens = max(spec.min_num_batched_tokens, _round_down(tokens * 0.75, 256))
        why = f"ITL p95 at {itl:.0%} of SLO, TTFT at {ttft:.0%}: cut token budget (shorter prefill chunks per step)"
    elif itl_binds and itl >= NEAR_SLO and tokens <= spec.min_num_batched_tokens:  # the last resort: queueing
        seqs = max(spec.min_num_seqs, int(seqs * 0.8))
        why = f"ITL p95 at {itl:.0%} of SLO, token budget at its floor: cut admission cap"
    elif snap.waiting >= ready and itl < itl_high and snap.running >= 0.9 * seqs * ready:
        # requests queue at the cap while ITL has room: that queueing is what TTFT pays for
        seqs = min(spec.max_num_seqs_cap, int(math.ceil(seqs * 1.25)))
        why = f"{snap.waiting:.0f} waiting at the admission cap with ITL at {itl:.0%} of SLO: raise admission cap"
    elif ttft >= TUNE_TTFT_HIGH and itl < itl_low:
        tokens = min(spec.max_num_batched_tokens_cap, _round_down(tokens * 1.25 + 255, 256))
        why = f"TTFT p95 at {ttft:.0%} of SLO with ITL at {itl:.0%}: raise token budget (prefill faster)"
    elif itl >= itl_high and not itl_binds:
        return BatchDecision(state, f"hold: ITL p95 at {itl:.0%} of SLO, but TTFT at {ttft:.0%} binds first: a "
                                    "smaller budget would cost TTFT more than it gives ITL")
    else:
        return BatchDecision(state, f"hold: TTFT p95 at {ttft:.0%}, ITL p95 at {itl:.0%} of SLO")
    if (seqs, tokens) == (state.max_num_seqs, state.max_num_batched_tokens):
        return BatchDecision(state, f"hold at the bounds: {why}")
    new = BatchState(seqs, tokens, snap.time)
    return BatchDecision(new, f"{why}; maxNumSeqs {seqs}, maxNumBatchedTokens {tokens}", True)


def _round_down(x: float, step: int) -> int:
    return max(step, int(x) // step * step)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _opt_float(v) -> float | None:
    return None if v is None else float(v)


__all__ = [
    "BatchDecision", "BatchState", "MetricsSnapshot", "PlannerSpec", "ReplicaDecision", "ReplicaState",
    "plan_replicas", "tune_batch_limits",
]
