"""Operator restart: no duplicate children, status intact; a ServiceMonitor appears once its API exists."""

from __future__ import annotations

import os

import pytest
from operator_harness import CRD, SERVICEMONITOR_CRD, Http, isvc_yaml, operator_config, wait_for

from shoal.fleet.apiserver.process import start_apiserver

SERVICES = ("alpha", "beta", "gamma")
CHILD_LISTS = ("/apis/apps/v1/namespaces/default/deployments", "/api/v1/namespaces/default/services",
               "/api/v1/namespaces/default/configmaps", "/api/v1/namespaces/default/secrets",
               "/apis/policy/v1/namespaces/default/poddisruptionbudgets")


@pytest.fixture
def own_api(tmp_path):
    """A separate API server, so these operators never share objects with the session's operator."""
    previous = os.environ.get("KUBECONFIG")
    with start_apiserver(tmp_path, manifests=(CRD,)) as process:
        os.environ["KUBECONFIG"] = str(process.kubeconfig)  # read by the operator's login at start
        try:
            yield Http(process.url)
        finally:
            if previous is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = previous


def managed(http: Http) -> dict[str, str]:
    """name/kind -> uid of every object the operator manages."""
    found = {}
    for path in CHILD_LISTS + ("/apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors",):
        body = http.get(path + "?labelSelector=app.kubernetes.io/managed-by%3Dshoal")
        for obj in (body or {}).get("items", []):
            found[f"{obj['kind']}/{obj['metadata']['name']}"] = obj["metadata"]["uid"]
    return found


def statuses(http: Http) -> dict[str, dict]:
    items = http.get("/apis/shoal.dev/v1alpha1/namespaces/default/inferenceservices")["items"]
    return {o["metadata"]["name"]: o.get("status") for o in items}


def reconciles(thread) -> float:
    return thread.metrics.registry.get_sample_value("shoal_operator_reconcile_duration_seconds_count") or 0


def test_restart_keeps_children_and_status_and_adds_servicemonitors(own_api):
    import json

    from shoal.operator.main import OperatorThread

    http = own_api
    with OperatorThread(operator_config(namespaces=("default",), all_namespaces=False)):
        for name in SERVICES:
            status, body = http.call("POST", "/apis/shoal.dev/v1alpha1/namespaces/default/inferenceservices",
                                     json.loads(isvc_yaml(name, "default")), content_type="application/json")
            assert status == 201, body
        wait_for(lambda: len(managed(http)) == 5 * len(SERVICES), what="all children")
        wait_for(lambda: all(s and s.get("conditions") for s in statuses(http).values()), what="statuses")
        before_children, before_status = managed(http), statuses(http)

    status, body = http.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", SERVICEMONITOR_CRD,
                             content_type="application/json")
    assert status == 201, body
    with OperatorThread(operator_config(namespaces=("default",), all_namespaces=False)) as second:
        wait_for(lambda: reconciles(second) >= len(SERVICES), what="a reconcile of every service")
        after = wait_for(lambda: (lambda m: len(m) == 6 * len(SERVICES) and m)(managed(http)),
                         what="ServiceMonitors")
        assert statuses(http) == before_status
    assert {k: v for k, v in after.items() if not k.startswith("ServiceMonitor/")} == before_children
    monitor = http.get("/apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors/alpha")
    assert monitor["spec"]["selector"]["matchLabels"] == {"shoal.dev/service": "alpha"}
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["metadata"]["ownerReferences"][0]["name"] == "alpha"
