"""A failing API call: status says Degraded with the error, a Warning Event is posted, the operator retries and
recovers. The fault is injected through kmock's reaction DSL on the emulator."""

from __future__ import annotations

import json
import os

from operator_harness import Http, ThreadedApi, isvc_yaml, operator_config, wait_for

PDB = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/chat"
ISVC = "/apis/shoal.dev/v1alpha1/namespaces/default/inferenceservices/chat"


def condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


def test_failed_write_degrades_status_then_recovers(tmp_path):
    from shoal.operator.main import OperatorThread

    previous = os.environ.get("KUBECONFIG")
    failing = {"on": True}
    with ThreadedApi(tmp_path) as emulator:
        emulator.api[lambda request: failing["on"] and request.method == "POST"
                     and "poddisruptionbudgets" in str(request.url)] << 500
        os.environ["KUBECONFIG"] = str(tmp_path / "kubeconfig")
        http = Http(emulator.url)
        try:
            with OperatorThread(operator_config(namespaces=("default",), all_namespaces=False)) as operator:
                status, body = http.call("POST", ISVC.rsplit("/", 1)[0], json.loads(isvc_yaml("chat", "default")),
                                         content_type="application/json")
                assert status == 201, body
                degraded = wait_for(lambda: (lambda o: (condition(o, "Degraded") or {}).get("status") == "True" and o)(
                    http.get(ISVC)), what="Degraded=True")
                assert condition(degraded, "Degraded")["reason"] == "ReconcileFailed"
                assert "500" in condition(degraded, "Degraded")["message"]
                assert condition(degraded, "Ready")["status"] == "False"
                assert http.get("/apis/apps/v1/namespaces/default/deployments/chat")  # the other writes went through
                assert http.get(PDB) is None
                events = http.get("/api/v1/namespaces/default/events")["items"]
                assert any(e["type"] == "Warning" and e["reason"] == "ReconcileFailed" for e in events)
                assert operator.metrics.registry.get_sample_value(
                    "shoal_operator_reconcile_errors_total", {"reason": "ApiError"}) >= 1

                failing["on"] = False  # the API server heals; the backoff retry reconciles
                wait_for(lambda: http.get(PDB), timeout=20, what="the PDB after recovery")
                wait_for(lambda: (condition(http.get(ISVC), "Degraded") or {}).get("status") == "False",
                         timeout=20, what="Degraded=False")
        finally:
            if previous is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = previous
