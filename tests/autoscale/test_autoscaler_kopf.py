"""The autoscaler timer end to end: real kopf against the API emulator over HTTP, a real Prometheus scraping
stand-in engine endpoints (the engine's real metrics registry), PATCHes to the pods' admin route."""

from __future__ import annotations

import base64
import os
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from promserver import running_prometheus
from standin import StandinEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # http_json: the helper tests/operator shares
from http_json import Http  # noqa: E402
from http_json import wait_for as wait_for_condition  # noqa: E402

from shoal.fleet.apiserver.process import start_apiserver

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "inferenceservice.yaml"
NS = "default"


Api = Http  # JSON calls to the API server, as a kubelet would make them
wait_for = partial(wait_for_condition, timeout=45.0, poll_s=0.2)  # the operator acts on a 1 s timer here


ISVC = "/apis/shoal.dev/v1alpha1/namespaces/default/inferenceservices"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def create_isvc(api: Api, name: str, **spec) -> None:
    body = {"apiVersion": "shoal.dev/v1alpha1", "kind": "InferenceService", "metadata": {"name": name},
            "spec": {"model": {"name": "m", "uri": "pvc://models/m"}, "resources": {"gpus": 0},
                     "slo": {"ttftP95Ms": 500, "itlP95Ms": 50}, "batchTuning": {"enabled": True}, **spec}}
    status, answer = api.call("POST", ISVC, body, "application/json")
    assert status == 201, answer


def run_pod(api: Api, service: str, index: int, port: int) -> None:
    """What a kubelet would write: a ready pod of the service, reachable at 127.0.0.1:port."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{service}-{index}", "labels": {"shoal.dev/service": service}},
           "spec": {"containers": [{"name": "engine", "image": "x",
                                    "ports": [{"name": "http", "containerPort": port}]}]}}
    status, answer = api.call("POST", "/api/v1/namespaces/default/pods", pod, "application/json")
    assert status == 201, answer
    api.call("PATCH", f"/api/v1/namespaces/default/pods/{service}-{index}/status", {"status": {
        "phase": "Running", "podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}})


def mark_ready(api: Api, name: str, ready: int) -> None:
    api.call("PATCH", f"{DEPLOY}/{name}/status", {"status": {"replicas": ready, "readyReplicas": ready}})


def condition(isvc: dict, kind: str) -> dict | None:
    return next((c for c in (isvc.get("status") or {}).get("conditions") or () if c["type"] == kind), None)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    previous = {"KUBECONFIG": os.environ.get("KUBECONFIG")}
    engine = StandinEngine(token=None, ttft_s=0.6, itl_s=0.09)  # both breach, ITL more: scale up, cut the budget
    workdir = tmp_path_factory.mktemp("autoscaler")
    targets = [(f"127.0.0.1:{engine.port}", {"namespace": NS, "service": "chat", "pod": "chat-0"})]
    with start_apiserver(workdir, manifests=(CRD,)) as api_process, \
            running_prometheus(workdir, targets) as prom_url:
        os.environ["KUBECONFIG"] = str(api_process.kubeconfig)
        from shoal.operator.config import OperatorConfig
        from shoal.operator.main import OperatorThread

        config = OperatorConfig(engine_image="registry.example/shoal-engine:test", all_namespaces=True,
                                liveness_port=None, metrics_port=None, standalone=True, resync_seconds=1.0,
                                prometheus_url=prom_url, control_period_s=1.0)  # the timer ticks every second
        operator = OperatorThread(config).start()
        try:
            yield Api(api_process.url), engine, config, operator
        finally:
            try:
                operator.stop()
            finally:
                engine.close()
                for key, value in previous.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value


def test_breach_scales_up_and_tunes_every_ready_pod(fleet):
    api, engine, _, _ = fleet
    create_isvc(api, "chat", autoscaling={"enabled": True, "minReplicas": 1, "maxReplicas": 3})
    wait_for(lambda: api.get(f"{DEPLOY}/chat"), what="the operator's Deployment")
    secret = wait_for(lambda: api.get("/api/v1/namespaces/default/secrets/chat-admin-token"), what="admin Secret")
    engine.token = base64.b64decode(secret["data"]["token"]).decode()
    run_pod(api, "chat", 0, engine.port)
    mark_ready(api, "chat", 1)

    deployment = wait_for(lambda: (d := api.get(f"{DEPLOY}/chat")) and d["spec"]["replicas"] >= 2 and d,
                          what="scale-up on the TTFT breach")
    assert deployment["spec"]["replicas"] <= 3
    wait_for(lambda: any(body.get("maxNumBatchedTokens", 8192) < 8192 and auth == f"Bearer {engine.token}"
                         for auth, body in engine.patches), what="a token-budget cut pushed to the pod")
    configmap = api.get("/api/v1/namespaces/default/configmaps/chat-runtime")
    assert int(configmap["data"]["maxNumBatchedTokens"]) < 8192  # new pods start tuned

    isvc = wait_for(lambda: (i := api.get(f"{ISVC}/chat")) and (i.get("status") or {}).get("desiredReplicas", 0) >= 2
                    and i, what="status.desiredReplicas")
    status = isvc["status"]
    assert condition(isvc, "MetricsAvailable")["status"] == "True"
    assert condition(isvc, "ScalingLimited") is not None
    decision = status["autoscaling"]["lastDecision"]
    assert decision["ttftP95Ms"] > 500 and decision["replicas"] >= 2
    assert status["autoscaling"]["planner"]["capacityRps"] > 0
    assert status["batch"]["maxNumBatchedTokens"] < 8192 and status["batch"]["lastTuneTime"].endswith("Z")
    events = api.get("/api/v1/namespaces/default/events")["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "chat"}
    assert {"Scaled", "Tuned"} <= reasons
    # the timer put no finalizer on it: the operator only ever writes status (RBAC), and deletion never waits on it
    assert not isvc["metadata"].get("finalizers")


def test_no_metrics_holds_the_replica_count(fleet):
    api, _, _, _ = fleet
    create_isvc(api, "blind", autoscaling={"enabled": True, "minReplicas": 1, "maxReplicas": 4})
    wait_for(lambda: api.get(f"{DEPLOY}/blind"), what="the operator's Deployment")
    api.call("PATCH", f"{ISVC}/blind/status", {"status": {"desiredReplicas": 3}})  # as if scaled up earlier
    wait_for(lambda: api.get(f"{DEPLOY}/blind")["spec"]["replicas"] == 3, what="3 replicas")
    mark_ready(api, "blind", 3)
    isvc = wait_for(lambda: (i := api.get(f"{ISVC}/blind")) and (c := condition(i, "MetricsAvailable"))
                    and c["reason"] == "MetricsMissing" and i, what="MetricsAvailable=False")
    assert condition(isvc, "MetricsAvailable")["status"] == "False"
    time.sleep(3)  # several control periods with no data
    assert api.get(f"{DEPLOY}/blind")["spec"]["replicas"] == 3
    assert "no data" in api.get(f"{ISVC}/blind")["status"]["autoscaling"]["lastDecision"]["reason"]
    status, _ = api.call("DELETE", f"{ISVC}/blind")
    assert status == 200
    wait_for(lambda: api.get(f"{ISVC}/blind") is None, timeout=10, what="deletion (no finalizer holds it)")


def test_restarted_operator_resumes_from_status(fleet):
    api, _, config, operator = fleet
    before = wait_for(lambda: (i := api.get(f"{ISVC}/chat")) and i["status"].get("autoscaling"), what="state")
    operator.stop()
    from shoal.operator.main import OperatorThread

    stamp = before["lastDecision"]["time"]
    replacement = OperatorThread(config).start()
    try:
        after = wait_for(lambda: (a := api.get(f"{ISVC}/chat")["status"]["autoscaling"])
                         and a["lastDecision"]["time"] != stamp and a, what="a decision by the new operator")
        assert "initial estimate" not in after["lastDecision"]["reason"]  # it kept the learned capacity
        assert after["planner"]["recentForecasts"]  # and the stabilization window
    finally:
        replacement.stop()
