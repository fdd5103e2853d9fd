"""Metrics faults (issue 9): a fault-injecting proxy in front of a real Prometheus, idle stand-in engines it scrapes,
and the emulated API server the real operator runs against. Shared by the test_metrics_* files and
bench/reliability_metrics_security.py.

The proxy forwards `/api/v1/query` to the real Prometheus unless a fault is switched on: `down` closes its
listening socket (connection refused), `slow` answers after the adapter's timeout, the others replace or rewrite
the answer (empty, bad JSON, another resultType, NaN/Inf/negative/non-numeric values, HTTP 5xx, a query error,
partial answers, two series where one was asked).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

from aiohttp import ClientSession, ClientTimeout, web
from prometheus_client import CONTENT_TYPE_LATEST

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "autoscale"))  # promserver: how the tests run a real Prometheus
sys.path.insert(0, str(REPO / "tests"))  # http_json: the JSON client and poller the test areas share

from http_json import Http, wait_for  # noqa: E402, F401  (wait_for: the tests and the campaign use it)
from promserver import free_port, running_prometheus  # noqa: E402

from shoal.engine.server.metrics import EngineMetrics  # noqa: E402
from shoal.operator import prometheus as prom  # noqa: E402

SLOW_S = 3.0  # the `slow` fault's delay: beyond the timeout the tests give the adapter
EMPTY = {"status": "success", "data": {"resultType": "vector", "result": []}}


def _vector(value: str, series: int = 1) -> dict:
    result = [{"metric": {"n": str(i)}, "value": [time.time(), value]} for i in range(series)]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def _matrix(answer: dict) -> dict:
    """The same series as a range answer (resultType matrix, `values` instead of `value`)."""
    result = [{"metric": s.get("metric", {}), "values": [s["value"]]} for s in answer["data"]["result"]]
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


# fault -> (HTTP status, body) given the query and the real answer; `down` and `slow` are the proxy's own.
REWRITES = {
    "empty": lambda q, real: (200, json.dumps(EMPTY)),
    "bad_json": lambda q, real: (200, '{"status": "success", "data": {"resultType": "vec'),
    "html_200": lambda q, real: (200, "<html><body>Service Unavailable</body></html>"),
    "wrong_type": lambda q, real: (200, json.dumps(_matrix(real))),
    "scalar": lambda q, real: (200, json.dumps({"status": "success",
                                                "data": {"resultType": "scalar", "result": [time.time(), "1"]}})),
    "nan": lambda q, real: (200, json.dumps(_vector("NaN"))),
    "inf": lambda q, real: (200, json.dumps(_vector("+Inf"))),
    "negative": lambda q, real: (200, json.dumps(_vector("-3"))),
    "non_numeric": lambda q, real: (200, json.dumps(_vector("lots"))),
    "http_5xx": lambda q, real: (503, "upstream connect error or disconnect/reset before headers"),
    "query_error": lambda q, real: (422, json.dumps({"status": "error", "errorType": "execution",
                                                      "error": "query processing would load too many samples"})),
    # the waiting-queue and engine-count queries lose their series; the others answer truly
    "partial": lambda q, real: (200, json.dumps(EMPTY if (prom.WAITING in q or "count(" in q) else real)),
    "two_series": lambda q, real: (200, json.dumps(_vector("1", series=2))),
}
FAULTS = ("down", "slow", *REWRITES)

# The MetricsAvailable reason each fault must produce (idle engines: every query is affected).
EXPECTED_REASON = {
    "down": prom.UNREACHABLE, "slow": prom.TIMEOUT, "empty": "MetricsMissing", "bad_json": prom.MALFORMED,
    "html_200": prom.MALFORMED, "wrong_type": prom.MALFORMED, "scalar": prom.MALFORMED, "nan": "MetricsMissing",
    "inf": prom.MALFORMED, "negative": prom.MALFORMED, "non_numeric": prom.MALFORMED,
    "http_5xx": prom.HTTP_ERROR, "query_error": prom.QUERY_ERROR, "partial": "MetricsMissing",
    "two_series": prom.MALFORMED, "engine_down": prom.PARTIAL,
}


class FaultProxy:
    """An aiohttp reverse proxy for Prometheus's query API on its own thread and event loop; `fault` switches."""

    def __init__(self, upstream: str, slow_s: float = SLOW_S):
        self.upstream = upstream.rstrip("/")
        self.slow_s = slow_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.fault: str | None = None
        self.served: dict[str, int] = {}  # fault (or "pass") -> queries answered
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self._site: web.TCPSite | None = None
        self._run(self._setup())

    def _run(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _setup(self) -> None:
        self.session = ClientSession(timeout=ClientTimeout(total=10))
        app = web.Application()
        app.router.add_get("/api/v1/query", self._query)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        self._site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    async def _stop_listening(self) -> None:
        """Refuse new connections and drop the open ones (a client's keep-alive must not outlive the server)."""
        await self._site.stop()
        self._site = None
        for connection in list(self.runner.server.connections):
            connection.force_close()

    async def _query(self, request: web.Request) -> web.Response:
        fault = self.fault
        self.served[fault or "pass"] = self.served.get(fault or "pass", 0) + 1
        query = request.query.get("query", "")
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        async with self.session.get(f"{self.upstream}/api/v1/query", params={"query": query}) as resp:
            status, text = resp.status, await resp.text()
        if fault in REWRITES:
            status, text = REWRITES[fault](query, json.loads(text))
        return web.Response(status=status, text=text, content_type="application/json")

    def set(self, fault: str | None) -> None:
        """Switch to `fault` (None: pass through). `down` stops listening; leaving it listens again."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
        if fault == "down" and self._site is not None:
            self._run(self._stop_listening())
        elif fault != "down" and self._site is None:
            self._run(self._listen())
        self.fault = fault

    def close(self) -> None:
        async def shutdown():
            await self.runner.cleanup()
            await self.session.close()

        self._run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)


class IdleEngine:
    """An engine's /metrics (the real EngineMetrics registry) with one request long ago and none since: an idle
    replica, the case where reading "no data" as zero would scale down. `stop()`/`start()` take it off the network
    (its series go stale in Prometheus) and back on the same port."""

    def __init__(self):
        self.metrics = EngineMetrics("m")
        self.metrics.observe_request("stop", ttft_s=0.1, e2e_s=0.5, queue_s=0.0)  # the series exist, flat
        stats = SimpleNamespace(num_running=0, num_waiting=0, kv_usage=0.0, prompt_tokens_total=0,
                                generation_tokens_total=0, num_preemptions_total=0, prefix_cache_queries_total=0,
                                prefix_cache_hits_total=0)
        self.metrics.update_engine_state(stats, SimpleNamespace(max_num_seqs=256, max_num_batched_tokens=8192))
        self.port = free_port()
        self.server: ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        metrics = self.metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = metrics.exposition() if self.path == "/metrics" else b""
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def read_metrics(url: str, namespace: str, service: str, timeout_s: float = 1.0) -> tuple[prom.ServiceMetrics, float]:
    """One ServiceMetrics through the adapter (a fresh client, as after an operator restart) and the seconds taken."""

    async def once():
        client = prom.PrometheusClient(url, timeout_s=timeout_s)
        try:
            started = time.monotonic()
            return await client.service_metrics(namespace, service), time.monotonic() - started
        finally:
            await client.close()

    return asyncio.run(once())


def idle_and_complete(metrics: prom.ServiceMetrics, engines: int) -> bool:
    return (metrics.waiting, metrics.running, metrics.arrival_rate, metrics.engines) == (0, 0, 0, engines)


def decide(metrics: prom.ServiceMetrics, replicas: int = 3):
    """What the control loop makes of these metrics for an idle-looking service at `replicas`, all ready, with a
    learned capacity (so true idle data asks for a scale-down): (replica decision, batch decision, condition)."""
    from shoal.operator.autoscaler import metrics_condition
    from shoal.operator.planners import (
        BatchState, MetricsSnapshot, PlannerSpec, ReplicaState, plan_replicas, tune_batch_limits,
    )

    spec = PlannerSpec(min_replicas=1, max_replicas=8, ttft_slo_s=0.5, itl_slo_s=0.05, scale_down_stabilization_s=0)
    metrics = prom.covering(metrics, replicas)
    snap = MetricsSnapshot(1000.0, metrics.ttft_p95_s, metrics.itl_p95_s, metrics.waiting, metrics.running,
                           metrics.kv_usage, metrics.arrival_rate, ready_replicas=replicas, current_replicas=replicas)
    state = ReplicaState(capacity_rps=5.0, last_rate=0.0, last_time=985.0)
    batch = BatchState(64, 2048, last_tune_time=0.0)
    return plan_replicas(snap, state, spec), tune_batch_limits(snap, batch, spec), metrics_condition(snap, metrics)


def expected_kinds(fault: str) -> dict[str, str]:
    """What each fault makes of each query when the engines are idle (the latency quantiles of an idle fleet have
    no samples even without a fault)."""
    every = tuple(prom.service_queries("ns", "svc"))
    whole = {"down": prom.UNREACHABLE, "slow": prom.TIMEOUT, "empty": prom.NO_SERIES, "nan": prom.NO_SAMPLES,
             "http_5xx": prom.HTTP_ERROR, "query_error": prom.QUERY_ERROR}
    if fault in whole:
        return dict.fromkeys(every, whole[fault])
    if fault == "partial":
        return {"ttft_p95_s": prom.NO_SAMPLES, "itl_p95_s": prom.NO_SAMPLES, "waiting": prom.NO_SERIES,
                "engines": prom.NO_SERIES}
    return dict.fromkeys(every, prom.MALFORMED)


def targets(engines: list[IdleEngine], namespace: str, service: str) -> list[tuple[str, dict[str, str]]]:
    return [(f"127.0.0.1:{e.port}", {"namespace": namespace, "service": service, "pod": f"{service}-{i}"})
            for i, e in enumerate(engines)]


Api = Http  # a minimal JSON client of the emulated API server (what a kubelet or a user would send)


def condition(isvc: dict | None, kind: str) -> dict | None:
    return next((c for c in ((isvc or {}).get("status") or {}).get("conditions") or () if c["type"] == kind), None)


__all__ = ["Api", "EXPECTED_REASON", "FAULTS", "FaultProxy", "IdleEngine", "REPO", "SLOW_S", "condition", "decide",
           "expected_kinds", "idle_and_complete", "read_metrics", "running_prometheus", "targets", "wait_for"]
