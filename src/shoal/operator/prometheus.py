"""The autoscaler's one window on the engines: PromQL over Prometheus's HTTP API.

Every query selects one service by the `namespace` and `service` labels Prometheus attaches when it scrapes
(DESIGN: metrics). A failure of any kind -- Prometheus down, slower than the timeout, an error answer, or an
empty result (no such series) -- is None, "no data", and never zero: a zero would tell the planner the service
is idle and make it scale down exactly when it is blind.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field

import aiohttp

log = logging.getLogger(__name__)

# One place that knows the engine's metric names (DESIGN: metrics, prefix `shoal:`, vLLM's names and buckets).
TTFT = "shoal:time_to_first_token_seconds"
ITL = "shoal:inter_token_latency_seconds"
WAITING = "shoal:num_requests_waiting"
RUNNING = "shoal:num_requests_running"
KV_USAGE = "shoal:kv_cache_usage_perc"


def service_queries(namespace: str, service: str, window: str = "1m") -> dict[str, str]:
    """The control loop's PromQL for one InferenceService, keyed by MetricsSnapshot field."""
    sel = f'namespace="{_escape(namespace)}",service="{_escape(service)}"'
    return {
        "ttft_p95_s": f"histogram_quantile(0.95, sum by (le) (rate({TTFT}_bucket{{{sel}}}[{window}])))",
        "itl_p95_s": f"histogram_quantile(0.95, sum by (le) (rate({ITL}_bucket{{{sel}}}[{window}])))",
        "waiting": f"sum({WAITING}{{{sel}}})",
        "running": f"sum({RUNNING}{{{sel}}})",
        "kv_usage": f"avg({KV_USAGE}{{{sel}}})",
        # a request is counted when its first token leaves: the rate requests enter service
        "arrival_rate": f"sum(rate({TTFT}_count{{{sel}}}[{window}]))",
    }


@dataclass(frozen=True)
class ServiceMetrics:
    ttft_p95_s: float | None = None
    itl_p95_s: float | None = None
    waiting: float | None = None
    running: float | None = None
    kv_usage: float | None = None
    arrival_rate: float | None = None
    errors: dict[str, str] = field(default_factory=dict)  # field -> why it is None

    @property
    def complete(self) -> bool:
        return not self.errors


class PrometheusClient:
    """Instant queries against one Prometheus; one aiohttp session for its lifetime."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"prometheus url {url!r} must start with http:// or https://")
        if timeout_s <= 0:
            raise ValueError("prometheus timeout_s must be > 0")
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def query(self, promql: str) -> tuple[float | None, str]:
        """The value of a query that returns one scalar-like sample, or (None, why)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.get(f"{self.url}/api/v1/query", params={"query": promql}) as resp:
                body = await resp.json(content_type=None)
        except asyncio.TimeoutError:
            return None, f"prometheus did not answer within {self.timeout.total:g} s"
        except (aiohttp.ClientError, ValueError) as exc:
            return None, f"prometheus unreachable or bad answer: {exc.__class__.__name__}: {exc}"
        if body.get("status") != "success":
            return None, f"prometheus error: {body.get('errorType')}: {body.get('error')}"
        result = (body.get("data") or {}).get("result") or []
        if not result:
            return None, "no series"
        value = float(result[0]["value"][1])
        if math.isnan(value) or math.isinf(value):
            return None, "no samples in the window"
        return value, ""

    async def service_metrics(self, namespace: str, service: str, window: str = "1m") -> ServiceMetrics:
        queries = service_queries(namespace, service, window)
        answers = await asyncio.gather(*(self.query(q) for q in queries.values()))
        values, errors = {}, {}
        for name, (value, why) in zip(queries, answers):
            values[name] = value
            if value is None:
                errors[name] = why
        if errors:
            log.debug("prometheus: %s/%s missing %s", namespace, service, errors)
        return ServiceMetrics(**values, errors=errors)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
