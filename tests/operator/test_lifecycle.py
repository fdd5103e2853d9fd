"""The issue's Show list, end to end: kubectl -> emulator -> real kopf operator -> children and status."""

from __future__ import annotations

import json

from operator_harness import isvc_yaml, wait_for

LABELS = {"app.kubernetes.io/name": "shoal-engine", "app.kubernetes.io/managed-by": "shoal"}


def paths(ns: str, name: str) -> dict[str, str]:
    return {
        "Deployment": f"/apis/apps/v1/namespaces/{ns}/deployments/{name}",
        "Service": f"/api/v1/namespaces/{ns}/services/{name}",
        "ConfigMap": f"/api/v1/namespaces/{ns}/configmaps/{name}-runtime",
        "Secret": f"/api/v1/namespaces/{ns}/secrets/{name}-admin-token",
        "PodDisruptionBudget": f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}",
    }


def isvc_path(ns: str, name: str) -> str:
    return f"/apis/shoal.dev/v1alpha1/namespaces/{ns}/inferenceservices/{name}"


def children(http, ns: str, name: str) -> dict[str, dict] | None:
    found = {kind: http.get(path) for kind, path in paths(ns, name).items()}
    return found if all(found.values()) else None


def condition(obj: dict, kind: str) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def test_create_builds_children_then_ready_follows_the_deployment(operator, kubectl, http, namespace):
    kubectl("apply", "--validate=false", "-f", "-", input=isvc_yaml("chat", namespace, replicas=2))
    found = wait_for(lambda: children(http, namespace, "chat"), what="children")
    owner = http.get(isvc_path(namespace, "chat"))
    for kind, obj in found.items():
        assert obj["metadata"]["labels"] == {**LABELS, "shoal.dev/service": "chat"}, kind
        [ref] = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "InferenceService", "chat", owner["metadata"]["uid"], True), kind
    deployment = found["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/shoal-engine:test"
    assert container["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    assert found["Service"]["spec"]["ports"][0] == {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    assert found["ConfigMap"]["data"] == {"maxNumSeqs": "256", "maxNumBatchedTokens": "8192"}
    assert found["Secret"]["data"]["token"]
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == {"shoal.dev/service": "chat"}

    status = wait_for(lambda: (http.get(isvc_path(namespace, "chat")).get("status") or {}).get("conditions")
                      and http.get(isvc_path(namespace, "chat")), what="status")
    assert status["status"]["observedGeneration"] == 1
    assert status["status"]["selector"] == "shoal.dev/service=chat"
    assert status["status"]["endpoint"] == f"http://chat.{namespace}.svc:8000/v1"
    assert condition(status, "Ready")["status"] == "False"

    # a kubelet-side controller reports ready pods on the Deployment's status subresource
    http.call("PATCH", paths(namespace, "chat")["Deployment"] + "/status",
              {"status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2}})
    ready = wait_for(lambda: (lambda o: o["status"].get("replicas") == 2 and o)(http.get(isvc_path(namespace, "chat"))),
                     what="ready replicas in status")
    assert condition(ready, "Ready")["status"] == "True"
    assert condition(ready, "Progressing")["status"] == "False"
    assert condition(ready, "Ready")["observedGeneration"] == 1
    kubectl("wait", "--for=condition=Ready", f"inferenceservice/chat", "-n", namespace, "--timeout=10s")
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert any(e["reason"] == "Reconciled" and "created Deployment chat" in e["message"] for e in events)


def test_spec_update_rolls_the_deployment_and_generation_is_observed(operator, kubectl, http, namespace):
    kubectl("apply", "--validate=false", "-f", "-", input=isvc_yaml("chat", namespace))
    before = wait_for(lambda: children(http, namespace, "chat"), what="children")["Deployment"]
    kubectl("apply", "--validate=false", "-f", "-",
            input=isvc_yaml("chat", namespace, engine={"maxNumSeqs": 64}, resources={"gpus": 0, "cpu": "2"}))
    after = wait_for(lambda: (lambda d: d["metadata"]["generation"] > before["metadata"]["generation"] and d)(
        http.get(paths(namespace, "chat")["Deployment"])), what="a rolled Deployment")
    args = after["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--max-num-seqs") + 1] == "64" and args[args.index("--device") + 1] == "cpu"
    assert "nvidia.com/gpu" not in after["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    wait_for(lambda: http.get(isvc_path(namespace, "chat"))["status"]["observedGeneration"] == 2,
             what="observedGeneration 2")
    # the runtime limit was above the new capacity: clipped in the ConfigMap, which pods read at start
    assert http.get(paths(namespace, "chat")["ConfigMap"])["data"]["maxNumSeqs"] == "64"


def test_batch_limit_changes_never_roll_the_deployment(operator, kubectl, http, namespace):
    kubectl("apply", "--validate=false", "-f", "-", input=isvc_yaml("chat", namespace))
    before = wait_for(lambda: children(http, namespace, "chat"), what="children")["Deployment"]
    # what the batch tuner does: new runtime limits in the ConfigMap (and pushed to pods over HTTP)
    http.call("PATCH", paths(namespace, "chat")["ConfigMap"], {"data": {"maxNumSeqs": "32"}})
    kubectl("apply", "--validate=false", "-f", "-",
            input=isvc_yaml("chat", namespace, batchTuning={"enabled": True, "minNumSeqs": 4}, slo={"itlP95Ms": 40}))
    wait_for(lambda: http.get(isvc_path(namespace, "chat"))["status"]["observedGeneration"] == 2,
             what="the spec change observed")
    after = http.get(paths(namespace, "chat")["Deployment"])
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"] == before["spec"]["template"]
    assert http.get(paths(namespace, "chat")["ConfigMap"])["data"]["maxNumSeqs"] == "32"  # the tuner's value stays


def test_children_deleted_or_edited_by_hand_are_restored(operator, kubectl, http, namespace):
    kubectl("apply", "--validate=false", "-f", "-", input=isvc_yaml("chat", namespace))
    original = wait_for(lambda: children(http, namespace, "chat"), what="children")
    kubectl("delete", "service", "chat", "-n", namespace)
    kubectl("delete", "pdb", "chat", "-n", namespace)
    kubectl("patch", "deployment", "chat", "-n", namespace, "--type=merge",
            "-p", json.dumps({"spec": {"replicas": 7, "template": {"spec": {"nodeSelector": {"rogue": "x"}}}}}))
    restored = wait_for(lambda: (lambda c: c and c["Service"]["metadata"]["uid"] != original["Service"]["metadata"]["uid"]
                                 and c["Deployment"]["spec"]["replicas"] == 1
                                 and not c["Deployment"]["spec"]["template"]["spec"].get("nodeSelector") and c)(
        children(http, namespace, "chat")), what="restored children")
    assert restored["Secret"]["data"]["token"] == original["Secret"]["data"]["token"]  # never rotated
    kubectl("delete", "secret", "chat-admin-token", "-n", namespace)
    wait_for(lambda: http.get(paths(namespace, "chat")["Secret"]), what="a new admin token Secret")
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert any(e["reason"] == "Restored" for e in events)


def test_kubectl_scale_changes_replicas_when_autoscaling_is_off(operator, kubectl, http, namespace):
    kubectl("apply", "--validate=false", "-f", "-", input=isvc_yaml("chat", namespace))
    wait_for(lambda: children(http, namespace, "chat"), what="children")
    kubectl("scale", "inferenceservice", "chat", "-n", namespace, "--replicas=3")
    wait_for(lambda: http.get(paths(namespace, "chat")["Deployment"])["spec"]["replicas"] == 3, what="3 replicas")
    wait_for(lambda: http.get(isvc_path(namespace, "chat"))["status"]["desiredReplicas"] == 3, what="status")


def test_autoscaling_owns_replicas_and_never_writes_the_spec(operator, kubectl, http, namespace):
    spec = {"replicas": 5, "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}}
    kubectl("apply", "--validate=false", "-f", "-", input=isvc_yaml("chat", namespace, **spec))
    wait_for(lambda: (children(http, namespace, "chat") or {}).get("Deployment", {}).get("spec", {}).get("replicas") == 2,
             what="minReplicas on the Deployment")
    created = http.get(isvc_path(namespace, "chat"))
    # the autoscaler's decision arrives in status; the operator carries it to the Deployment
    http.call("PATCH", isvc_path(namespace, "chat") + "/status", {"status": {"desiredReplicas": 3}})
    wait_for(lambda: http.get(paths(namespace, "chat")["Deployment"])["spec"]["replicas"] == 3, what="3 replicas")
    now = http.get(isvc_path(namespace, "chat"))
    assert now["spec"] == created["spec"] and now["metadata"]["generation"] == created["metadata"]["generation"]


def test_deleting_the_service_collects_its_children(operator, kubectl, http, namespace):
    kubectl("apply", "--validate=false", "-f", "-", input=isvc_yaml("chat", namespace))
    wait_for(lambda: children(http, namespace, "chat"), what="children")
    kubectl("delete", "inferenceservice", "chat", "-n", namespace, "--wait=true")
    wait_for(lambda: not any(http.get(p) for p in paths(namespace, "chat").values()), what="children collected")


def test_operator_metrics_count_reconciles(operator, kubectl, http, namespace):
    kubectl("apply", "--validate=false", "-f", "-", input=isvc_yaml("chat", namespace, replicas=3))
    wait_for(lambda: children(http, namespace, "chat"), what="children")
    registry = operator.metrics.registry
    assert registry.get_sample_value("shoal_operator_reconcile_duration_seconds_count") > 0
    labels = {"namespace": namespace, "service": "chat"}
    wait_for(lambda: registry.get_sample_value("shoal_operator_desired_replicas", labels) == 3, what="gauge")
    assert registry.get_sample_value("shoal_operator_ready_replicas", labels) == 0
