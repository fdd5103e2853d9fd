"""The Prometheus adapter against a real Prometheus scraping the engine's real metrics registry."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from promserver import free_port, running_prometheus

from shoal.engine.server.metrics import EngineMetrics
from shoal.operator.prometheus import PrometheusClient, service_queries


class Exporter:
    """The engine's EngineMetrics served as the engine serves them (text format via `exposition()`; the
    OpenMetrics path of prometheus_client's own server would rewrite `shoal:` to `shoal_`), fed steady synthetic
    traffic from a thread."""

    def __init__(self):
        metrics = self.metrics = EngineMetrics("m")

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = metrics.exposition()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._traffic, daemon=True)
        stats = SimpleNamespace(num_running=7, num_waiting=3, kv_usage=0.25, prompt_tokens_total=0,
                                generation_tokens_total=0, num_preemptions_total=0, prefix_cache_queries_total=0,
                                prefix_cache_hits_total=0)
        self.metrics.update_engine_state(stats, SimpleNamespace(max_num_seqs=64, max_num_batched_tokens=2048))
        self.thread.start()

    def _traffic(self):
        while not self.stop.is_set():  # 20 requests/s: TTFT 0.3 s, every inter-token gap 0.02 s
            for _ in range(2):
                self.metrics.observe_request("stop", ttft_s=0.3, e2e_s=1.0, queue_s=0.01)
                for _ in range(10):
                    self.metrics.inter_token_latency.observe(0.02)
            time.sleep(0.1)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.server.shutdown()


@pytest.fixture(scope="module")
def exporter():
    exp = Exporter()
    yield exp
    exp.close()


@pytest.fixture(scope="module")
def prometheus(exporter, tmp_path_factory):
    labels = {"namespace": "ml", "service": "chat", "pod": "chat-0"}
    with running_prometheus(tmp_path_factory.mktemp("prom"), [(f"127.0.0.1:{exporter.port}", labels)]) as url:
        yield url


async def _until_complete(client: PrometheusClient, timeout: float = 45.0):
    deadline = time.monotonic() + timeout
    while True:
        # a 10 s window over 1 s scrapes; rate() under-reads until a series spans its whole window
        m = await client.service_metrics("ml", "chat", window="10s")
        if m.complete and m.arrival_rate and m.arrival_rate > 5:
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"prometheus never answered every query: {m.errors}")
        await asyncio.sleep(0.5)


async def test_service_metrics_from_a_real_scrape(prometheus):
    client = PrometheusClient(prometheus)
    try:
        m = await _until_complete(client)
    finally:
        await client.close()
    assert m.waiting == 3 and m.running == 7 and m.kv_usage == pytest.approx(0.25)
    assert 0.25 < m.ttft_p95_s <= 0.5  # every TTFT was 0.3 s: the (0.25, 0.5] bucket, interpolated
    assert 0.01 < m.itl_p95_s <= 0.025
    assert 5 < m.arrival_rate < 40  # ~20/s; the exporter thread shares two cores with everything else


async def test_another_service_has_no_data_not_zero(prometheus):
    client = PrometheusClient(prometheus)
    try:
        await _until_complete(client)  # Prometheus has data -- just not for this service
        m = await client.service_metrics("ml", "other")
    finally:
        await client.close()
    assert (m.ttft_p95_s, m.itl_p95_s, m.waiting, m.running, m.kv_usage, m.arrival_rate) == (None,) * 6
    assert set(m.errors) == set(service_queries("ml", "other")) and "no series" in m.errors["waiting"]


async def test_prometheus_down_is_no_data():
    client = PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    try:
        m = await client.service_metrics("ml", "chat")
    finally:
        await client.close()
    assert m.waiting is None and m.arrival_rate is None and not m.complete
    assert "unreachable" in m.errors["waiting"]


async def test_slow_prometheus_is_no_data():
    async def stall(request):
        await asyncio.sleep(5)
        return web.json_response({"status": "success", "data": {"result": [{"value": [0, "1"]}]}})

    app = web.Application()
    app.router.add_get("/api/v1/query", stall)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    client = PrometheusClient(f"http://127.0.0.1:{port}", timeout_s=0.5)
    try:
        started = time.monotonic()
        m = await client.service_metrics("ml", "chat")
        assert time.monotonic() - started < 3  # the six queries run at once and each gives up at the timeout
    finally:
        await client.close()
        await runner.cleanup()
    assert not m.complete and "did not answer" in m.errors["ttft_p95_s"]


async def test_prometheus_error_answer_is_no_data(prometheus):
    client = PrometheusClient(prometheus)
    try:
        value, why = await client.query("sum(rate(shoal:num_requests_waiting[1m]")  # unbalanced: a parse error
    finally:
        await client.close()
    assert value is None and "bad_data" in why


def test_queries_select_on_namespace_and_service():
    q = service_queries("ml", 'we"ird')
    assert all('namespace="ml",service="we\\"ird"' in text for text in q.values())
    assert q["ttft_p95_s"].startswith("histogram_quantile(0.95, sum by (le) (rate(shoal:time_to_first_token")
