"""A stand-in engine endpoint: the engine's real metrics registry and admin route contract, no model.

It serves /metrics as the engine does (EngineMetrics.exposition, text format) with steady synthetic traffic of a
chosen TTFT and ITL, and PATCH /admin/runtime-config with the bearer-token check, recording what it was sent.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

from prometheus_client import CONTENT_TYPE_LATEST

from shoal.engine.server.metrics import EngineMetrics


class StandinEngine:
    def __init__(self, token: str | None, ttft_s: float, itl_s: float, waiting: int = 0, rate: float = 10.0):
        self.token = token
        self.metrics = EngineMetrics("m")
        self.ttft_s, self.itl_s, self.rate = ttft_s, itl_s, rate
        self.patches: list[tuple[str | None, dict]] = []
        self.limits = {"maxNumSeqs": 256, "maxNumBatchedTokens": 8192}
        stats = SimpleNamespace(num_running=4, num_waiting=waiting, kv_usage=0.2, prompt_tokens_total=0,
                                generation_tokens_total=0, num_preemptions_total=0, prefix_cache_queries_total=0,
                                prefix_cache_hits_total=0)
        self.metrics.update_engine_state(stats, SimpleNamespace(max_num_seqs=256, max_num_batched_tokens=8192))
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/metrics":
                    self._reply(200, engine.metrics.exposition(), CONTENT_TYPE_LATEST)
                else:
                    self._reply(404, b"{}")

            def do_PATCH(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                auth = self.headers.get("Authorization")
                engine.patches.append((auth, body))
                if self.path != "/admin/runtime-config":
                    return self._reply(404, b"{}")
                if engine.token is None or auth != f"Bearer {engine.token}":
                    return self._reply(401, b'{"error": {"message": "The admin token is wrong."}}')
                engine.limits.update(body)
                self._reply(200, json.dumps(engine.limits).encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self._stop = threading.Event()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._traffic, daemon=True).start()

    def _traffic(self) -> None:
        while not self._stop.is_set():
            self.metrics.observe_request("stop", ttft_s=self.ttft_s, e2e_s=self.ttft_s + 1, queue_s=0.0)
            for _ in range(5):
                self.metrics.inter_token_latency.observe(self.itl_s)
            time.sleep(1 / self.rate)

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
