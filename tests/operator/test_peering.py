"""Two operator replicas with kopf peering: only the higher-priority one acts; the other waits."""

from __future__ import annotations

import json
import logging
import os

from operator_harness import CRD, REPO, Http, isvc_yaml, operator_config, wait_for

from shoal.fleet.apiserver.process import start_apiserver


def test_only_the_highest_priority_replica_reconciles(tmp_path):
    from shoal.operator.main import OperatorThread

    previous = os.environ.get("KUBECONFIG")
    messages: list[str] = []
    capture = logging.Handler(logging.INFO)
    capture.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    kopf_logger = logging.getLogger("kopf")
    kopf_logger.addHandler(capture)
    level = kopf_logger.level
    kopf_logger.setLevel(logging.INFO)
    with start_apiserver(tmp_path, manifests=(CRD, REPO / "deploy" / "kopf-peering.yaml")) as api:
        os.environ["KUBECONFIG"] = str(api.kubeconfig)
        http = Http(api.url)
        try:
            low = OperatorThread(operator_config(standalone=False, peering_priority=10))
            high = OperatorThread(operator_config(standalone=False, peering_priority=20))
            with low, high:
                peers = wait_for(lambda: len((http.get("/apis/kopf.dev/v1/clusterkopfpeerings/shoal")
                                              .get("status") or {})) >= 2, what="both replicas in the peering")
                assert peers
                wait_for(lambda: any("Pausing operations in favour" in m for m in messages),
                         what="the lower-priority replica to pause")
                status, body = http.call("POST", "/apis/shoal.dev/v1alpha1/namespaces/default/inferenceservices",
                                         json.loads(isvc_yaml("chat", "default")), content_type="application/json")
                assert status == 201, body
                wait_for(lambda: http.get("/apis/apps/v1/namespaces/default/deployments/chat"), what="a Deployment")
                count = lambda t: t.metrics.registry.get_sample_value(
                    "shoal_operator_reconcile_duration_seconds_count") or 0
                wait_for(lambda: count(high) >= 1, what="the leader's reconcile")
                assert count(low) == 0
        finally:
            kopf_logger.removeHandler(capture)
            kopf_logger.setLevel(level)
            if previous is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = previous
