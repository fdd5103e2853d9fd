"""The autoscaler's one window on the engines: PromQL over Prometheus's HTTP API.

Every query selects one service by the `namespace` and `service` labels Prometheus attaches when it scrapes
(DESIGN: metrics). A failure of any kind -- Prometheus down, slower than the timeout, an HTTP or query error, an
answer that is not the one-sample vector asked for (bad JSON, another resultType, NaN, Inf, negative or
non-numeric values, several series), or an empty result -- is None, "no data", and never zero: a zero would tell
the planner the service is idle and make it scale down exactly when it is blind. Each None carries a failure kind
(the MetricsAvailable condition's reason) and a message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass, field, replace

import aiohttp

log = logging.getLogger(__name__)

# One place that knows the engine's metric names (DESIGN: metrics, prefix `shoal:`, vLLM's names and buckets).
TTFT = "shoal:time_to_first_token_seconds"
ITL = "shoal:inter_token_latency_seconds"
WAITING = "shoal:num_requests_waiting"
RUNNING = "shoal:num_requests_running"
KV_USAGE = "shoal:kv_cache_usage_perc"

# Failure kinds, most severe first: the condition names the first one present.
UNREACHABLE = "PrometheusUnreachable"
TIMEOUT = "PrometheusTimeout"
HTTP_ERROR = "PrometheusHTTPError"
QUERY_ERROR = "PrometheusQueryError"
MALFORMED = "MalformedAnswer"
PARTIAL = "PartialSeries"
NO_SERIES = "NoSeries"
NO_SAMPLES = "NoSamples"
FAILURE_ORDER = (UNREACHABLE, TIMEOUT, HTTP_ERROR, QUERY_ERROR, MALFORMED, PARTIAL, NO_SERIES, NO_SAMPLES)
MAX_ANSWER_BYTES = 1 << 20  # one sample is ~200 bytes; anything near this is not the answer asked for


def service_queries(namespace: str, service: str, window: str = "1m") -> dict[str, str]:
    """The control loop's PromQL for one InferenceService, keyed by ServiceMetrics field."""
    sel = f'namespace="{_escape(namespace)}",service="{_escape(service)}"'
    return {
        "ttft_p95_s": f"histogram_quantile(0.95, sum by (le) (rate({TTFT}_bucket{{{sel}}}[{window}])))",
        "itl_p95_s": f"histogram_quantile(0.95, sum by (le) (rate({ITL}_bucket{{{sel}}}[{window}])))",
        "waiting": f"sum({WAITING}{{{sel}}})",
        "running": f"sum({RUNNING}{{{sel}}})",
        "kv_usage": f"avg({KV_USAGE}{{{sel}}})",
        # a request is counted when its first token leaves: the rate requests enter service
        "arrival_rate": f"sum(rate({TTFT}_count{{{sel}}}[{window}]))",
        # engines Prometheus scraped: sums over fewer engines than are ready under-read the load
        "engines": f"count({RUNNING}{{{sel}}})",
    }


@dataclass(frozen=True)
class Answer:
    """One query's value, or None with the failure kind and why."""

    value: float | None
    failure: str = ""
    why: str = ""


def parse_answer(http_status: int, text: str) -> Answer:
    """Prometheus's answer to an instant query that must return one sample (pure; total over any input)."""
    if http_status >= 500:
        return Answer(None, HTTP_ERROR, f"prometheus answered HTTP {http_status}: {text[:200]!r}")
    try:
        body = json.loads(text)
    except ValueError as exc:
        return Answer(None, MALFORMED, f"answer is not JSON (HTTP {http_status}): {exc}")
    if not isinstance(body, dict):
        return Answer(None, MALFORMED, f"answer is a JSON {type(body).__name__}, not an object")
    if body.get("status") == "error":
        return Answer(None, QUERY_ERROR, f"prometheus error: {body.get('errorType')}: {str(body.get('error'))[:300]}")
    if body.get("status") != "success" or http_status != 200:
        return Answer(None, HTTP_ERROR if http_status != 200 else MALFORMED,
                      f"answer status {str(body.get('status'))[:50]!r} with HTTP {http_status}")
    data = body.get("data")
    if not isinstance(data, dict):
        return Answer(None, MALFORMED, "answer has no data object")
    if data.get("resultType") != "vector":
        return Answer(None, MALFORMED, f"resultType {str(data.get('resultType'))[:50]!r} where vector was asked")
    result = data.get("result")
    if not isinstance(result, list):
        return Answer(None, MALFORMED, "answer's result is not a list")
    if not result:
        return Answer(None, NO_SERIES, "no series")
    if len(result) > 1:
        return Answer(None, MALFORMED, f"{len(result)} series where the query aggregates to one")
    return _sample_value(result[0])


def _sample_value(sample: object) -> Answer:
    pair = sample.get("value") if isinstance(sample, dict) else None
    if not isinstance(pair, list) or len(pair) != 2:
        return Answer(None, MALFORMED, "the series has no [time, value] pair")
    raw = pair[1]
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        return Answer(None, MALFORMED, f"sample value {raw!r} is not a number")
    try:
        value = float(raw)
    except ValueError:
        return Answer(None, MALFORMED, f"sample value {str(raw)[:50]!r} is not a number")
    if math.isnan(value):  # histogram_quantile over a window without observations
        return Answer(None, NO_SAMPLES, "no samples in the window")
    if math.isinf(value) or value < 0:
        return Answer(None, MALFORMED, f"sample value {value} is outside [0, inf)")
    return Answer(value)


@dataclass(frozen=True)
class ServiceMetrics:
    ttft_p95_s: float | None = None
    itl_p95_s: float | None = None
    waiting: float | None = None
    running: float | None = None
    kv_usage: float | None = None
    arrival_rate: float | None = None
    engines: float | None = None  # engines whose series Prometheus holds
    errors: dict[str, str] = field(default_factory=dict)  # field -> why it is None
    failures: dict[str, str] = field(default_factory=dict)  # field -> failure kind (FAILURE_ORDER)

    @property
    def complete(self) -> bool:
        return not self.errors

    def failure_of(self, names) -> str:
        """The most severe failure kind among `names` (fields), or "" when none of them failed."""
        kinds = {self.failures.get(n) for n in names}
        return next((k for k in FAILURE_ORDER if k in kinds), "")


LOAD_FIELDS = ("ttft_p95_s", "itl_p95_s", "waiting", "running", "kv_usage", "arrival_rate")


def covering(metrics: ServiceMetrics, ready_replicas: int) -> ServiceMetrics:
    """The metrics, or no data when Prometheus holds the series of fewer engines than are ready (pure).

    A sum over two of three engines reads a third less load than there is: that is partial data, not a lighter
    load, and a scale-down on it would be blind."""
    if metrics.engines is None:
        if "engines" not in metrics.errors or all(getattr(metrics, f) is None for f in LOAD_FIELDS):
            return metrics
        # the load answered but the engine count did not: how much of the fleet the sums cover is unknown
        kind, why = metrics.failures["engines"], f"engine count: {metrics.errors['engines']}"
    elif metrics.engines >= ready_replicas:
        return metrics
    else:
        kind, why = PARTIAL, f"series of {metrics.engines:.0f} of {ready_replicas} ready engines"
    return replace(metrics, **{f: None for f in LOAD_FIELDS},
                   errors={**metrics.errors, **{f: why for f in LOAD_FIELDS}},
                   failures={**metrics.failures, **{f: kind for f in LOAD_FIELDS}})


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
        answer = await self.answer(promql)
        return answer.value, answer.why

    async def answer(self, promql: str) -> Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.get(f"{self.url}/api/v1/query", params={"query": promql}) as resp:
                body = bytearray()
                async for chunk in resp.content.iter_chunked(1 << 16):
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        return Answer(None, MALFORMED, f"answer larger than {MAX_ANSWER_BYTES} bytes")
                status = resp.status
        except asyncio.TimeoutError:
            return Answer(None, TIMEOUT, f"prometheus did not answer within {self.timeout.total:g} s")
        except aiohttp.ClientConnectionError as exc:
            return Answer(None, UNREACHABLE, f"prometheus unreachable: {exc.__class__.__name__}: {exc}")
        except aiohttp.ClientError as exc:
            return Answer(None, MALFORMED, f"prometheus bad answer: {exc.__class__.__name__}: {exc}")
        return parse_answer(status, body.decode("utf-8", errors="replace"))

    async def service_metrics(self, namespace: str, service: str, window: str = "1m") -> ServiceMetrics:
        queries = service_queries(namespace, service, window)
        answers = await asyncio.gather(*(self.answer(q) for q in queries.values()))
        values = {name: a.value for name, a in zip(queries, answers)}
        errors = {name: a.why for name, a in zip(queries, answers) if a.value is None}
        failures = {name: a.failure for name, a in zip(queries, answers) if a.value is None}
        if errors:
            log.debug("prometheus: %s/%s missing %s", namespace, service, errors)
        return ServiceMetrics(**values, errors=errors, failures=failures)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
