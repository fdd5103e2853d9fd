"""What Prometheus would tell the planner about the simulated fleet.

Each replica keeps cumulative histograms and counters, as the engine's /metrics does. Every scrape interval the
fleet records them per replica; a query then computes `sum by (le) (rate(x_bucket[1m]))` across replicas and
`histogram_quantile(0.95, ...)` with Prometheus's linear interpolation inside a bucket, and reads gauges from the
last scrape. Bucket boundaries mirror vLLM's (DESIGN: metrics mirror vLLM's names, types and buckets).
"""

from __future__ import annotations

import bisect
import math
from collections import deque

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)


class Histogram:
    """Cumulative counts per bucket, +Inf last (non-cumulative storage; cumulated on read)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0.0] * (len(bounds) + 1)

    def observe(self, value: float, weight: float = 1.0) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += weight

    def snapshot(self) -> tuple[float, ...]:
        return tuple(self.counts)


def histogram_quantile(q: float, bounds: tuple[float, ...], counts: list[float]) -> float | None:
    """Prometheus's histogram_quantile on per-bucket (non-cumulative) rates; None when there is nothing."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    cum = 0.0
    for i, c in enumerate(counts):
        if cum + c >= rank and c > 0:
            if i == len(bounds):  # +Inf bucket: Prometheus returns the highest finite bound
                return bounds[-1]
            lower = 0.0 if i == 0 else bounds[i - 1]
            return lower + (bounds[i] - lower) * (rank - cum) / c
        cum += c
    return bounds[-1]


class ScrapeSeries:
    """Scraped samples of one replica's cumulative metrics, kept for the longest query window."""

    def __init__(self, keep_s: float = 300.0) -> None:
        self.samples: deque[tuple[float, dict]] = deque()
        self.keep_s = keep_s

    def add(self, t: float, values: dict) -> None:
        self.samples.append((t, values))
        while self.samples and t - self.samples[0][0] > self.keep_s:
            self.samples.popleft()

    def rate(self, now: float, window: float, key: str):
        """Per-second increase over the window (first to last sample inside it), or None with < 2 samples."""
        inside = [(t, v) for t, v in self.samples if now - window < t <= now]
        if len(inside) < 2:
            return None
        (t0, v0), (t1, v1) = inside[0], inside[-1]
        a, b = v0[key], v1[key]
        if isinstance(a, tuple):
            return [(y - x) / (t1 - t0) for x, y in zip(a, b)]
        return (b - a) / (t1 - t0)

    def last(self, now: float, key: str, lookback: float = 300.0):
        if not self.samples:
            return None
        t, v = self.samples[-1]
        return v[key] if now - t <= lookback else None


def sum_rates(series: list[ScrapeSeries], now: float, window: float, key: str):
    total = None
    for s in series:
        r = s.rate(now, window, key)
        if r is None:
            continue
        if isinstance(r, list):
            total = r if total is None else [a + b for a, b in zip(total, r)]
        else:
            total = r if total is None else total + r
    return total


def quantile_over(series: list[ScrapeSeries], now: float, window: float, key: str, bounds, q: float = 0.95):
    rates = sum_rates(series, now, window, key)
    if rates is None:
        return None
    value = histogram_quantile(q, bounds, rates)
    return None if value is None or math.isnan(value) else value
