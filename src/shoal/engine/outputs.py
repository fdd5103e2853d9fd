"""What the engine hands back: per-request outputs and engine-wide statistics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RequestMetrics:
    """Timestamps from time.monotonic(); None until the event happened."""

    arrival_time: float
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    finished_time: float | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    new_token_ids: list[int]
    new_text: str
    finished: bool
    finish_reason: str | None  # "stop" | "length" | "abort" | None
    metrics: RequestMetrics = field(repr=False, default=None)  # type: ignore[assignment]


@dataclass(frozen=True)
class RuntimeLimits:
    max_num_seqs: int
    max_num_batched_tokens: int


@dataclass(frozen=True)
class EngineStats:
    num_running: int
    num_waiting: int
    kv_usage: float
    num_preemptions_total: int
    prefix_cache_queries_total: int
    prefix_cache_hits_total: int
    prompt_tokens_total: int
    generation_tokens_total: int
    last_step_time: float | None
    steps_total: int


@dataclass(frozen=True)
class StepStats:
    num_prompt_tokens: int
    num_generation_tokens: int
    num_running: int
    num_waiting: int
    step_seconds: float
    device_wait_seconds: float = 0.0  # of step_seconds, waiting for the device's sampled tokens (GPU-bound when high)
