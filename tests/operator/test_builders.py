"""Pure builders, planning and status: no API server needed."""

from __future__ import annotations

import copy

import pytest

from shoal.operator import builders, kube
from shoal.operator.config import OperatorConfig, ServiceSpec, parse_model_uri
from shoal.operator.reconcile import desired_children, is_subset, plan
from shoal.operator.status import build_status, desired_replicas, merge_conditions

CONFIG = OperatorConfig(engine_image="img:1", namespaces=("ml",))


def isvc(**spec) -> dict:
    return {"apiVersion": "shoal.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "chat", "namespace": "ml", "uid": "u-1", "generation": 1, "resourceVersion": "5"},
            "spec": {"model": {"name": "smollm2", "uri": "pvc://models/smollm2"}, **spec}}


def container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_gpu_deployment_follows_the_design():
    body = isvc(engine={"drainTimeoutSeconds": 45})
    spec = ServiceSpec.from_body(body["spec"])
    deployment = builders.build_deployment(body, spec, CONFIG, replicas=2)
    pod = deployment["spec"]["template"]["spec"]
    engine = container(deployment)
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert engine["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert engine["livenessProbe"]["httpGet"]["path"] == "/health"
    assert engine["startupProbe"]["failureThreshold"] * engine["startupProbe"]["periodSeconds"] >= 600
    assert engine["lifecycle"]["preStop"]
    assert pod["terminationGracePeriodSeconds"] >= 45
    security = engine["securityContext"]
    assert security["runAsNonRoot"] and not security["allowPrivilegeEscalation"]
    assert security["readOnlyRootFilesystem"] and security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert flag(engine["args"], "--device") == "cuda" and flag(engine["args"], "--model") == "/models/smollm2"
    assert flag(engine["args"], "--engine-process") == "true"
    assert flag(engine["args"], "--runtime-config-dir") == "/etc/shoal/runtime"
    assert flag(engine["args"], "--admin-token-file") == "/var/run/shoal/admin/token"
    mounts = {m["mountPath"]: m["name"] for m in engine["volumeMounts"]}
    assert mounts["/etc/shoal/runtime"] == "runtime" and mounts["/var/run/shoal/admin"] == "admin-token"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["runtime"]["configMap"]["name"] == "chat-runtime"
    assert volumes["admin-token"]["secret"]["secretName"] == "chat-admin-token"
    assert volumes["model"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert engine["image"] == "img:1"


def test_zero_gpus_runs_the_engine_on_cpu():
    body = isvc(resources={"gpus": 0, "cpu": "2", "memory": "4Gi"}, image="mine:2",
                model={"name": "m", "uri": "file:///opt/models/m", "dtype": "float32"})
    deployment = builders.build_deployment(body, ServiceSpec.from_body(body["spec"]), CONFIG, replicas=1)
    engine = container(deployment)
    assert flag(engine["args"], "--device") == "cpu" and flag(engine["args"], "--model") == "/opt/models/m"
    assert flag(engine["args"], "--engine-process") == "false"
    assert "nvidia.com/gpu" not in engine["resources"]["limits"]
    assert engine["image"] == "mine:2"
    assert all(v["name"] != "dshm" for v in deployment["spec"]["template"]["spec"]["volumes"])


def test_model_uris():
    assert parse_model_uri("pvc://models").path == "/models"
    assert parse_model_uri("hf://org/repo").volume is None
    with pytest.raises(ValueError, match="spec.model.uri"):
        parse_model_uri("s3://x/y")


def test_runtime_limits_keep_the_tuners_values_within_capacity():
    spec = ServiceSpec.from_body(isvc(engine={"maxNumSeqs": 64, "maxNumBatchedTokens": 4096})["spec"])
    assert builders.runtime_limits(spec, None) == {"maxNumSeqs": "64", "maxNumBatchedTokens": "4096"}
    assert builders.runtime_limits(spec, {"maxNumSeqs": "16", "maxNumBatchedTokens": "2048"}) == {
        "maxNumSeqs": "16", "maxNumBatchedTokens": "2048"}
    assert builders.runtime_limits(spec, {"maxNumSeqs": "512", "maxNumBatchedTokens": "junk"}) == {
        "maxNumSeqs": "64", "maxNumBatchedTokens": "4096"}


def test_admin_token_is_random_and_never_patched():
    first = builders.build_admin_token_secret(isvc())["stringData"]["token"]
    second = builders.build_admin_token_secret(isvc())["stringData"]["token"]
    assert first != second and len(first) >= 32


def as_stored(body: dict, manifests: list[tuple[kube.Kind, dict]]) -> dict:
    """What the API server would hold after creating these manifests (plus fields it adds)."""
    stored = {}
    for kind, manifest in manifests:
        obj = copy.deepcopy(manifest)
        obj["metadata"].update(uid=f"uid-{kind.kind}", resourceVersion="9", creationTimestamp="2026-01-01T00:00:00Z")
        if kind.kind == "Secret":
            obj["data"] = {"token": "c2VjcmV0"}
            del obj["stringData"]
        if kind.kind == "Service":
            obj["spec"]["clusterIP"] = "10.0.0.7"
        stored[(kind.kind, manifest["metadata"]["name"])] = obj
    return stored


def test_plan_is_idempotent_and_batch_limits_do_not_roll():
    body = isvc()
    spec = ServiceSpec.from_body(body["spec"])
    stored = as_stored(body, desired_children(body, spec, CONFIG, 1, None, monitoring=False))
    observed = lambda kind, name: stored.get((kind.kind, name))
    assert plan(body, CONFIG, observed, monitoring=False).actions == []
    stored[("ConfigMap", "chat-runtime")]["data"] = {"maxNumSeqs": "8", "maxNumBatchedTokens": "1024"}  # tuner
    tuned = dict(body, spec=dict(body["spec"], batchTuning={"enabled": True}, slo={"itlP95Ms": 20}))
    assert plan(tuned, CONFIG, observed, monitoring=False).actions == []
    rolled = dict(body, spec=dict(body["spec"], engine={"maxNumSeqs": 128}))
    [action] = plan(rolled, CONFIG, observed, monitoring=False).actions
    assert (action.kind.kind, action.why) == ("Deployment", "pod template changed: rolling out")


def test_plan_creates_missing_children_and_servicemonitor_only_when_served():
    body = isvc()
    kinds = lambda monitoring: [a.kind.kind for a in plan(body, CONFIG, lambda k, n: None, monitoring).actions]
    assert kinds(False) == ["Secret", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]
    assert kinds(True)[-1] == "ServiceMonitor"


def test_replica_ownership():
    off = ServiceSpec.from_body(isvc(replicas=3)["spec"])
    assert desired_replicas(off, {"desiredReplicas": 7}) == 3
    on = ServiceSpec.from_body(isvc(replicas=3, autoscaling={"enabled": True, "minReplicas": 2,
                                                             "maxReplicas": 5})["spec"])
    assert desired_replicas(on, {}) == 2
    assert desired_replicas(on, {"desiredReplicas": 4}) == 4
    assert desired_replicas(on, {"desiredReplicas": 9}) == 5


def test_status_keeps_foreign_conditions_and_transition_times():
    body = isvc()
    body["status"] = {"conditions": [
        {"type": "MetricsAvailable", "status": "True", "lastTransitionTime": "t0"},
        {"type": "Ready", "status": "False", "lastTransitionTime": "t1"}]}
    spec = ServiceSpec.from_body(body["spec"])
    deployment = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "readyReplicas": 1,
                                                            "updatedReplicas": 1}}
    status = build_status(body, spec, deployment, {"maxNumSeqs": "256", "maxNumBatchedTokens": "8192"}, None, "t2")
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["MetricsAvailable"]["lastTransitionTime"] == "t0"
    assert by_type["Ready"]["status"] == "True" and by_type["Ready"]["lastTransitionTime"] == "t2"
    assert by_type["Progressing"]["status"] == "False"
    assert status["replicas"] == 1 and status["batch"]["maxNumSeqs"] == 256
    again = merge_conditions(status["conditions"], [dict(by_type["Ready"])], "t3")
    assert {c["type"]: c for c in again}["Ready"]["lastTransitionTime"] == "t2"


def test_is_subset_reads_quantities_as_strings():
    assert is_subset({"a": {"b": 1}}, {"a": {"b": "1", "c": 2}})
    assert not is_subset({"a": [1, 2]}, {"a": [1]})
    assert not is_subset({"a": True}, {"a": "True"})


def test_config_names_the_field_to_fix():
    with pytest.raises(ValueError, match="--engine-image"):
        OperatorConfig(engine_image="", namespaces=("ml",))
    with pytest.raises(ValueError, match="--all-namespaces"):
        OperatorConfig(namespaces=())
