"""Load a request trace (CSV `TIMESTAMP,ContextTokens,GeneratedTokens`) and scale its rate.

Rate scaling keeps the hour: each request is replayed K times on average (floor(K) or ceil(K) copies, by a seeded
coin); every copy after the first moves by a seeded uniform offset in [-5 s, +5 s] and takes the lengths of a
request drawn at random from the same minute, so copies of one long prompt do not arrive together. The per-minute
shape and length mix are kept; the fleet sees K times the load. A warm-up replays the trace's first minutes before t = 0 so that every
policy starts from a steady fleet, not an empty one; only t >= 0 is scored.
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

COPY_JITTER_S = 5.0


@dataclass(frozen=True)
class TraceRequest:
    time: float  # seconds from the trace start
    prompt_tokens: int
    output_tokens: int


def load_trace(path: str | Path) -> list[TraceRequest]:
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"trace {path}: missing column(s) {sorted(missing)}; expected "
                             "TIMESTAMP,ContextTokens,GeneratedTokens")
        for row in reader:
            ts = datetime.fromisoformat(row["TIMESTAMP"].strip()[:26])
            rows.append((ts, int(row["ContextTokens"]), int(row["GeneratedTokens"])))
    if not rows:
        raise ValueError(f"trace {path} has no requests")
    t0 = min(r[0] for r in rows)
    reqs = [TraceRequest((ts - t0).total_seconds(), max(1, p), max(1, g)) for ts, p, g in rows]
    return sorted(reqs, key=lambda r: r.time)


def scale_trace(reqs: list[TraceRequest], rate_scale: float, seed: int) -> list[TraceRequest]:
    if rate_scale <= 0:
        raise ValueError("--rate-scale must be > 0")
    rng = random.Random(seed)
    end = reqs[-1].time
    by_minute: dict[int, list[TraceRequest]] = {}
    for r in reqs:
        by_minute.setdefault(int(r.time // 60), []).append(r)
    out: list[TraceRequest] = []
    for r in reqs:
        copies = math.floor(rate_scale) + (1 if rng.random() < rate_scale - math.floor(rate_scale) else 0)
        for i in range(copies):
            if i == 0:
                out.append(r)
                continue
            t = min(max(r.time + rng.uniform(-COPY_JITTER_S, COPY_JITTER_S), 0.0), end)
            src = rng.choice(by_minute[int(r.time // 60)])
            out.append(TraceRequest(t, src.prompt_tokens, src.output_tokens))
    out.sort(key=lambda r: r.time)
    return out


def with_warmup(reqs: list[TraceRequest], warmup_s: float) -> list[TraceRequest]:
    """Prepend the first `warmup_s` seconds of the trace, shifted to [-warmup_s, 0)."""
    head = [TraceRequest(r.time - warmup_s, r.prompt_tokens, r.output_tokens) for r in reqs if r.time < warmup_s]
    return head + reqs


def per_minute_rate(reqs: list[TraceRequest]) -> list[float]:
    """Requests/s of each scored minute (t >= 0)."""
    end = max(r.time for r in reqs)
    counts = [0] * (int(end // 60) + 1)
    for r in reqs:
        if r.time >= 0:
            counts[int(r.time // 60)] += 1
    last_len = end - 60 * (len(counts) - 1)
    return [c / 60 if i < len(counts) - 1 else c / max(last_len, 1.0) for i, c in enumerate(counts)]
