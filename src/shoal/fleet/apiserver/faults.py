"""Fault injection: the emulator answers a chosen share of API calls the way a sick API server does.

Kinds (DESIGN: issue 9, API faults): `conflict` (409 on a write), `throttle` (429 with Retry-After), `error` (500),
`timeout` (the call hangs, then the connection drops; a write may or may not have been applied: as with a real
timeout the client cannot tell), `watch_drop` (a watch stream is cut mid-way without a closing chunk).
One seeded generator draws one number per eligible call, so the same call sequence gets the same faults.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from typing import Any

from shoal.fleet.apiserver.errors import ApiError

REQUEST_KINDS = ("conflict", "throttle", "error", "timeout")  # faults that replace a call's answer
KINDS = REQUEST_KINDS + ("watch_drop",)
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class FaultConfig:
    conflict: float = 0.0  # share of writes answered 409 Conflict (reads: its share goes to the other kinds)
    throttle: float = 0.0  # share of calls answered 429 TooManyRequests with Retry-After
    error: float = 0.0  # share of calls answered 500 InternalError
    timeout: float = 0.0  # share of calls that hang `hang_s`, then lose their connection
    watch_drop: float = 0.0  # share of watch streams cut after a uniform time in [0, watch_drop_after_s]
    seed: int = 0
    hang_s: float = 1.0
    timeout_applies: float = 0.5  # share of timed-out writes the server applied before the drop
    retry_after_s: int = 1
    watch_drop_after_s: float = 5.0
    user_agents: tuple[str, ...] = ()  # only clients whose User-Agent starts with one of these; () = every client

    def __post_init__(self) -> None:
        for name in KINDS + ("timeout_applies",):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(f"fault rate {name}={value!r} must be within [0, 1]")
        if self.request_rate > 1.0:
            raise ValueError(f"conflict+throttle+error+timeout = {self.request_rate:.3f} must be <= 1: lower them")
        if not self.hang_s >= 0 or not self.watch_drop_after_s >= 0:
            raise ValueError("hang_s and watch_drop_after_s must be >= 0 seconds")
        if self.retry_after_s < 0:
            raise ValueError(f"retry_after_s must be >= 0, got {self.retry_after_s}")
        object.__setattr__(self, "user_agents", tuple(self.user_agents))

    @property
    def request_rate(self) -> float:
        return sum(getattr(self, k) for k in REQUEST_KINDS)

    @property
    def active(self) -> bool:
        return self.request_rate > 0 or self.watch_drop > 0

    @classmethod
    def uniform(cls, rate: float, seed: int = 0, **overrides: Any) -> "FaultConfig":
        """`rate` of all calls fail, split evenly over the four request kinds; the same rate of watches drop."""
        share = rate / len(REQUEST_KINDS)
        return cls(**{k: share for k in REQUEST_KINDS}, watch_drop=rate, seed=seed, **overrides)

    @classmethod
    def parse(cls, text: str) -> "FaultConfig":
        """`rate=0.1,seed=7` (uniform) or per kind, e.g. `conflict=0.05,timeout=0.02,hang_s=0.5,user_agents=kopf|shoal`."""
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        rate = None
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or (key not in known and key != "rate"):
                raise ValueError(f"--faults item {item!r}: expected KEY=VALUE with KEY one of rate, {', '.join(known)}")
            if key == "rate":
                rate = float(raw)
            elif key == "user_agents":
                values[key] = tuple(filter(None, raw.split("|")))
            elif key in ("seed", "retry_after_s"):
                values[key] = int(raw)
            else:
                values[key] = float(raw)
        return cls.uniform(rate, **values) if rate is not None else cls(**values)

    def to_text(self) -> str:
        """The inverse of `parse` (for a command line)."""
        parts = [f"{k}={v}" for k, v in asdict(self).items() if k != "user_agents"]
        if self.user_agents:
            parts.append("user_agents=" + "|".join(self.user_agents))
        return ",".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), user_agents=list(self.user_agents))


def pick_fault(config: FaultConfig, draw: float, mutating: bool) -> str | None:
    """Pure: which request fault a uniform draw in [0, 1) selects. Reads cannot conflict, so for a read the
    conflict share is spread over the other kinds in proportion: every call fails at the same total rate."""
    weights = {k: getattr(config, k) for k in REQUEST_KINDS}
    if not mutating:
        weights["conflict"] = 0.0
        rest = sum(weights.values())
        scale = config.request_rate / rest if rest else 0.0
        weights = {k: w * scale for k, w in weights.items()}
    edge = 0.0
    for kind, weight in weights.items():
        edge += weight
        if draw < edge:
            return kind
    return None


def fault_error(kind: str, retry_after_s: int) -> ApiError:
    """The Status a real API server answers with for each answered kind (timeouts get no answer at all)."""
    if kind == "conflict":
        return ApiError(409, "Conflict", "Operation cannot be fulfilled: the object has been modified; please apply "
                                         "your changes to the latest version and try again")
    if kind == "throttle":
        return ApiError(429, "TooManyRequests", "the server has received too many requests and has asked us to try "
                                                "again later", {"retryAfterSeconds": retry_after_s})
    if kind == "error":
        return ApiError(500, "InternalError", 'an error on the server ("injected fault") has prevented the request '
                                              "from succeeding")
    raise ValueError(f"fault kind {kind!r} has no answer; answered kinds: conflict, throttle, error")


@dataclass(frozen=True)
class Fault:
    kind: str
    apply_first: bool = False  # timeout: serve the call, then drop the answer
    after_s: float = 0.0  # timeout: hang this long; watch_drop: cut the stream after this long


class FaultInjector:
    """Decides, per call, whether and how it fails; counts what it injected."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        """A new configuration restarts the generator from its seed and zeroes the counters."""
        self.config = config
        self._random = random.Random(config.seed)
        self.calls = 0  # calls eligible for a request fault
        self.watches = 0  # watch streams eligible for a drop
        self.injected = {k: 0 for k in KINDS}
        self.timeouts_applied = 0

    def targets(self, user_agent: str) -> bool:
        return not self.config.user_agents or any(user_agent.startswith(p) for p in self.config.user_agents)

    def decide(self, method: str, user_agent: str, watch: bool) -> Fault | None:
        if not self.config.active or not self.targets(user_agent):
            return None
        if watch:
            self.watches += 1
            if self._random.random() >= self.config.watch_drop:
                return None
            self.injected["watch_drop"] += 1
            return Fault("watch_drop", after_s=self._random.uniform(0.0, self.config.watch_drop_after_s))
        self.calls += 1
        mutating = method in MUTATING
        kind = pick_fault(self.config, self._random.random(), mutating)
        if kind is None:
            return None
        self.injected[kind] += 1
        if kind != "timeout":
            return Fault(kind)
        applied = mutating and self._random.random() < self.config.timeout_applies
        self.timeouts_applied += applied
        return Fault(kind, apply_first=applied, after_s=self.config.hang_s)

    def report(self) -> dict[str, Any]:
        """What `GET /debug/faults` answers: the configuration and the counts so far."""
        return {"config": self.config.to_dict(), "calls": self.calls, "watches": self.watches,
                "injected": dict(self.injected), "total": sum(self.injected.values()),
                "timeoutsApplied": self.timeouts_applied}
