"""The demo's load: the Azure conversation trace, compressed to minutes and scaled down to what CPU replicas serve.

The trace has one hour of production arrivals (`TIMESTAMP,ContextTokens,GeneratedTokens`). A laptop cannot serve
its token counts in real time, so the demo replays it with three knobs, all reported:
- time compression: the hour is squeezed into `duration_s`, keeping the load's shape (ramp, peak, decline);
- thinning: each request is kept with one probability, so the mean rate becomes `mean_rps` (shape preserved);
- token scaling: prompt and output lengths are divided by `token_divisor` and clipped to the given bounds.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

TRACE_NAME = "azure_llm_2023_conv.csv"


@dataclass(frozen=True)
class TraceRequest:
    """One arrival: seconds since the start of the replay, prompt and output token counts."""

    at_s: float
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class ReplayConfig:
    duration_s: float = 240.0
    mean_rps: float = 2.0
    token_divisor: float = 16.0
    min_prompt_tokens: int = 8
    max_prompt_tokens: int = 256
    min_output_tokens: int = 4
    max_output_tokens: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ValueError(f"duration_s must be > 0 seconds, got {self.duration_s}")
        if self.mean_rps <= 0:
            raise ValueError(f"mean_rps must be > 0 requests/s, got {self.mean_rps}")
        if self.token_divisor < 1:
            raise ValueError(f"token_divisor must be >= 1 (it shrinks token counts), got {self.token_divisor}")
        if not 1 <= self.min_prompt_tokens <= self.max_prompt_tokens:
            raise ValueError("need 1 <= min_prompt_tokens <= max_prompt_tokens")
        if not 1 <= self.min_output_tokens <= self.max_output_tokens:
            raise ValueError("need 1 <= min_output_tokens <= max_output_tokens")


def find_trace(start: Path | None = None) -> Path:
    """The trace lives in the shared folder beside the repository: `<repo>/../shared/traces/`."""
    here = (start or Path(__file__)).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "traces" / TRACE_NAME
        if (parent / "pyproject.toml").exists() and candidate.exists():
            return candidate
        if (parent / "pyproject.toml").exists():
            break
    raise FileNotFoundError(
        f"trace {TRACE_NAME} not found: expected it at ../shared/traces/{TRACE_NAME} next to the repository "
        "(the Azure LLM inference trace 2023, conversation service); pass --trace PATH to use another copy"
    )


def read_trace(path: Path) -> list[tuple[float, int, int]]:
    """Rows as (seconds since the first arrival, context tokens, generated tokens), in arrival order."""
    rows: list[tuple[float, int, int]] = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)} (want TIMESTAMP,ContextTokens,GeneratedTokens)")
        start: datetime | None = None
        for row in reader:
            # The trace has 7 fractional digits; datetime takes at most 6.
            stamp = datetime.fromisoformat(row["TIMESTAMP"].strip()[:26])
            start = start or stamp
            rows.append(((stamp - start).total_seconds(), int(row["ContextTokens"]), int(row["GeneratedTokens"])))
    rows.sort(key=lambda r: r[0])
    return rows


def compress(rows: list[tuple[float, int, int]], config: ReplayConfig) -> list[TraceRequest]:
    """Squeeze the trace into `duration_s`, thin it to `mean_rps`, shrink its token counts (deterministic for a seed)."""
    if not rows:
        return []
    span = max(rows[-1][0], 1e-9)
    time_factor = config.duration_s / span
    keep = min(1.0, config.mean_rps * config.duration_s / len(rows))
    rng = random.Random(config.seed)
    out: list[TraceRequest] = []
    for at, context, generated in rows:
        if rng.random() >= keep:
            continue
        prompt = _clip(round(context / config.token_divisor), config.min_prompt_tokens, config.max_prompt_tokens)
        output = _clip(round(generated / config.token_divisor), config.min_output_tokens, config.max_output_tokens)
        out.append(TraceRequest(at_s=at * time_factor, prompt_tokens=prompt, output_tokens=output))
    return out


def _clip(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def describe(rows: list[tuple[float, int, int]], requests: list[TraceRequest], config: ReplayConfig) -> str:
    """One paragraph for the report: how the replay differs from the trace."""
    span = rows[-1][0] if rows else 0.0
    mean_ctx = sum(r[1] for r in rows) / max(1, len(rows))
    mean_gen = sum(r[2] for r in rows) / max(1, len(rows))
    mean_p = sum(r.prompt_tokens for r in requests) / max(1, len(requests))
    mean_o = sum(r.output_tokens for r in requests) / max(1, len(requests))
    return (
        f"{len(rows):,} requests over {span / 60:.0f} min ({len(rows) / max(span, 1):.1f} req/s, "
        f"mean {mean_ctx:.0f} prompt / {mean_gen:.0f} output tokens) replayed as {len(requests):,} requests over "
        f"{config.duration_s:.0f} s: time compressed {span / config.duration_s:.1f}x, thinned to "
        f"{len(requests) / config.duration_s:.2f} req/s, token counts divided by {config.token_divisor:g} and clipped "
        f"to [{config.min_prompt_tokens}, {config.max_prompt_tokens}] prompt / "
        f"[{config.min_output_tokens}, {config.max_output_tokens}] output (mean {mean_p:.0f} / {mean_o:.0f})"
    )


def rate_per_window(requests: list[TraceRequest], window_s: float, duration_s: float) -> list[float]:
    """Offered requests/s in consecutive windows, for plots and for checking the shape survived."""
    n = max(1, int(-(-duration_s // window_s)))
    counts = [0] * n
    for r in requests:
        counts[min(n - 1, int(r.at_s // window_s))] += 1
    return [c / window_s for c in counts]
