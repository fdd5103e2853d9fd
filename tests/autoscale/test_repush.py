"""Pods converge on status.batch even when the push that should have carried it never happened.

A crash between the autoscaler's status write and its PATCH to the pods, or a pod that refused the PATCH, used to
leave pods on older limits until the tuner's next change. control_once remembers per service what every ready pod
took in this operator process and pushes status.batch again (on a tick with data) until they all have. Real API
emulator over HTTP, a real Prometheus scraping a stand-in engine whose latency sits inside the SLO (the tuner
holds, so only the re-push can reach the pod), the stand-in's admin route.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
from promserver import running_prometheus
from standin import StandinEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from http_json import Http  # noqa: E402

from shoal.fleet.apiserver.process import start_apiserver
from shoal.operator.autoscaler import control_once
from shoal.operator.kube import KubeClient
from shoal.operator.prometheus import PrometheusClient

CRD = Path(__file__).resolve().parents[2] / "crds" / "inferenceservice.yaml"
NS = "/api/v1/namespaces/default"
ISVC = "/apis/shoal.dev/v1alpha1/namespaces/default/inferenceservices"
TUNED = {"maxNumSeqs": 64, "maxNumBatchedTokens": 2048}


def seed_service(api: Http, token: str, engine_port: int) -> None:
    """What a crashed operator left: a tuned status.batch, and a ready pod still at its startup limits."""
    for path, body in (
        (ISVC, {"apiVersion": "shoal.dev/v1alpha1", "kind": "InferenceService", "metadata": {"name": "chat"},
                "spec": {"model": {"name": "m", "uri": "pvc://models/m"}, "resources": {"gpus": 0},
                         "slo": {"ttftP95Ms": 500, "itlP95Ms": 50}, "batchTuning": {"enabled": True}}}),
        ("/apis/apps/v1/namespaces/default/deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "chat"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"shoal.dev/service": "chat"}},
                     "template": {"metadata": {"labels": {"shoal.dev/service": "chat"}},
                                  "spec": {"containers": [{"name": "engine", "image": "x"}]}}}}),
        (f"{NS}/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat-admin-token"},
                           "data": {"token": base64.b64encode(token.encode()).decode()}}),
        (f"{NS}/pods", {"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "chat-0", "labels": {"shoal.dev/service": "chat"}},
                        "spec": {"containers": [{"name": "engine", "image": "x",
                                                 "ports": [{"name": "http", "containerPort": engine_port}]}]}}),
    ):
        status, answer = api.call("POST", path, body, "application/json")
        assert status == 201, answer
    for path, body in (
        (f"{NS}/pods/chat-0/status", {"status": {"phase": "Running", "podIP": "127.0.0.1",
                                                 "conditions": [{"type": "Ready", "status": "True"}]}}),
        ("/apis/apps/v1/namespaces/default/deployments/chat/status", {"status": {"replicas": 1, "readyReplicas": 1}}),
        (f"{ISVC}/chat/status", {"status": {"batch": {**TUNED, "tunedAt": time.time() - 5}}}),
    ):
        status, answer = api.call("PATCH", path, body)
        assert status == 200, answer


def metrics_available(api: Http) -> bool:
    conditions = (api.get(f"{ISVC}/chat").get("status") or {}).get("conditions") or ()
    return any(c["type"] == "MetricsAvailable" and c["status"] == "True" for c in conditions)


async def test_a_restarted_operator_pushes_status_batch_until_every_pod_took_it(tmp_path):
    engine = StandinEngine(token="not-yet", ttft_s=0.1, itl_s=0.01)
    targets = [(f"127.0.0.1:{engine.port}", {"namespace": "default", "service": "chat", "pod": "chat-0"})]
    try:
        with start_apiserver(tmp_path, manifests=(CRD,)) as server, running_prometheus(tmp_path, targets) as prom:
            api = Http(server.url)
            seed_service(api, "right-token", engine.port)
            client = KubeClient(SimpleNamespace(server=server.url, token=None, scheme=None, username=None))
            prometheus = PrometheusClient(prom)
            async with aiohttp.ClientSession() as engines:
                try:
                    async def tick(pushed):
                        isvc = api.get(f"{ISVC}/chat")
                        return await control_once(client, prometheus, engines, isvc, time.time(), pushed=pushed)

                    deadline = time.monotonic() + 30
                    while not metrics_available(api):  # the old behaviour meanwhile: nothing changed, no push
                        assert time.monotonic() < deadline, "Prometheus never gave the tick data"
                        outcome = await tick(None)
                        assert not outcome.batch.changed
                        await asyncio.sleep(0.5)
                    assert engine.patches == []

                    pushed: dict = {}
                    await tick(pushed)  # the pod refuses (401): not recorded, tried again next tick
                    assert len(engine.patches) == 1 and pushed == {}
                    engine.token = "right-token"
                    outcome = await tick(pushed)
                    assert outcome.pushed == 1 and engine.limits == TUNED and not outcome.batch.changed
                    assert pushed == {("default", "chat"): (TUNED["maxNumSeqs"], TUNED["maxNumBatchedTokens"])}
                    await tick(pushed)  # every ready pod took it: no more PATCHes
                    assert [body for _, body in engine.patches] == [TUNED, TUNED]
                finally:
                    await client.close()
                    await prometheus.close()
    finally:
        engine.close()
