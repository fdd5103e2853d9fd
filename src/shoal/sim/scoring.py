"""Ground truth of a simulated hour: exact per-minute p95s, goodput and GPU-hours.

The planners see Prometheus-style estimates (bucketed, windowed); the score uses every sample. A 1-minute window
meets the SLO when the p95 TTFT of the requests that arrived in it and the p95 of the inter-token gaps emitted in
it are both within their SLOs. A request counts toward goodput when its TTFT and its mean inter-token latency are
both within the SLOs. GPU-hours: every pod from creation (it holds its GPU while loading) until it is gone.
"""

from __future__ import annotations

import math

import numpy as np

ITL_BIN_S = 0.0005
ITL_BINS = 4000  # 2 s, then one overflow bin


class Scorer:
    def __init__(self, slo_ttft_s: float, slo_itl_s: float, score_end: float) -> None:
        self.slo_ttft_s = slo_ttft_s
        self.slo_itl_s = slo_itl_s
        self.score_end = score_end
        self.minutes = max(1, math.ceil(score_end / 60))
        self._ttft: list[list[float]] = [[] for _ in range(self.minutes)]
        self._itl = np.zeros((self.minutes, ITL_BINS + 1))
        self._pending: dict[int, int] = {}  # id(request) -> minute, until it gets its first token
        self.arrived_n = 0
        self.good_n = 0
        self.summary: dict = {}

    def _minute(self, t: float) -> int | None:
        if t < 0 or t > self.score_end:
            return None
        return min(int(t // 60), self.minutes - 1)

    def arrived(self, req) -> None:
        m = self._minute(req.arrival)
        if m is not None:
            self.arrived_n += 1
            self._pending[id(req)] = m

    def first_token(self, req, t: float) -> None:
        m = self._pending.pop(id(req), None)
        if m is not None:
            self._ttft[m].append(t - req.arrival)

    def itl(self, t: float, duration: float, n: int) -> None:
        m = self._minute(t)
        if m is not None:
            self._itl[m, min(int(duration / ITL_BIN_S), ITL_BINS)] += n

    def finished(self, req) -> None:
        if req.arrival < 0 or req.arrival > self.score_end or req.first_token_time is None:
            return
        ttft = req.first_token_time - req.arrival
        gaps = req.output_tokens - 1
        mean_itl = (req.finish_time - req.first_token_time) / gaps if gaps > 0 else 0.0
        if ttft <= self.slo_ttft_s and mean_itl <= self.slo_itl_s:
            self.good_n += 1

    def finish(self, replicas) -> dict:
        for m in self._pending.values():  # never got a first token: an infinite TTFT in its minute
            self._ttft[m].append(math.inf)
        windows = []
        for m in range(self.minutes):
            ttft = self._ttft[m]
            itl_counts = self._itl[m]
            if not ttft and itl_counts.sum() == 0:
                continue
            ttft_p95 = float(np.percentile(ttft, 95)) if ttft else 0.0
            itl_p95 = _binned_p95(itl_counts)
            windows.append({
                "minute": m, "requests": len(ttft), "ttft_p95_s": ttft_p95, "itl_p95_s": itl_p95,
                "ttft_ok": ttft_p95 <= self.slo_ttft_s, "itl_ok": itl_p95 <= self.slo_itl_s,
            })
        n = max(len(windows), 1)
        gpu_s = sum(max(0.0, min(r.gone_at, self.score_end) - max(r.created, 0.0)) for r in replicas)
        self.summary = {
            "attainment": sum(w["ttft_ok"] and w["itl_ok"] for w in windows) / n,
            "ttft_attainment": sum(w["ttft_ok"] for w in windows) / n,
            "itl_attainment": sum(w["itl_ok"] for w in windows) / n,
            "windows": windows,
            "goodput_rps": self.good_n / self.score_end,
            "goodput_fraction": self.good_n / max(self.arrived_n, 1),
            "requests": self.arrived_n,
            "gpu_hours": gpu_s / 3600,
        }
        return self.summary


def _binned_p95(counts: np.ndarray) -> float:
    total = counts.sum()
    if total <= 0:
        return 0.0
    i = int(np.searchsorted(np.cumsum(counts), 0.95 * total))
    return math.inf if i >= ITL_BINS else (i + 1) * ITL_BIN_S
