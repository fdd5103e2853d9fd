"""Security checks (issue 9) shared by the test_security_* files and bench/reliability_metrics_security.py:
hostile InferenceService specs, the CRD schema's bounds, the rendered chart and the engine pods, and a real
`shoal serve` whose whole log is searched for the admin token."""

from __future__ import annotations

import copy
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # chart.*: the chart tests' renderer, CRD validator and hardening checks

from chart.conftest import CHART, HELM, render  # noqa: E402
from chart.crd_validation import load_crd_schema, validation_errors  # noqa: E402
from chart.test_security import engine_deployments, hardening_problems, pod_specs, wildcard_problems  # noqa: E402

CRD = REPO / "crds" / "inferenceservice.yaml"
VALID = {"apiVersion": "shoal.dev/v1alpha1", "kind": "InferenceService", "metadata": {"name": "chat"},
         "spec": {"model": {"name": "smollm2", "uri": "pvc://models/smollm2"}}}


def hostile(path: str, value) -> dict:
    """VALID with `value` at the dotted `path` (e.g. spec.autoscaling.maxReplicas)."""
    obj = copy.deepcopy(VALID)
    *parents, leaf = path.split(".")
    node = obj
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return obj


# (what, dotted path, value, the field the refusal must name)
HOSTILE_SPECS = [
    ("absurd replica count", "spec.replicas", 10**9, "spec.replicas"),
    ("replicas past int64", "spec.replicas", 2**70, "spec.replicas"),
    ("negative replicas", "spec.replicas", -1, "spec.replicas"),
    ("absurd maxReplicas", "spec.autoscaling", {"enabled": True, "maxReplicas": 10**9}, "spec.autoscaling.maxReplicas"),
    ("negative minReplicas", "spec.autoscaling", {"minReplicas": -5}, "spec.autoscaling.minReplicas"),
    ("min above max", "spec.autoscaling", {"minReplicas": 9, "maxReplicas": 2}, "spec.autoscaling.minReplicas"),
    ("negative stabilization", "spec.autoscaling", {"scaleDownStabilizationSeconds": -1},
     "spec.autoscaling.scaleDownStabilizationSeconds"),
    ("absurd GPU count", "spec.resources", {"gpus": 10**6}, "spec.resources.gpus"),
    ("negative GPU count", "spec.resources", {"gpus": -1}, "spec.resources.gpus"),
    ("absurd maxNumSeqs", "spec.engine", {"maxNumSeqs": 10**9}, "spec.engine.maxNumSeqs"),
    ("zero maxNumSeqs", "spec.engine", {"maxNumSeqs": 0}, "spec.engine.maxNumSeqs"),
    ("absurd token budget", "spec.engine", {"maxNumBatchedTokens": 10**12}, "spec.engine.maxNumBatchedTokens"),
    ("absurd context", "spec.engine", {"maxModelLen": 10**9}, "spec.engine.maxModelLen"),
    ("GPU memory above 1", "spec.engine", {"gpuMemoryUtilization": 5.0}, "spec.engine.gpuMemoryUtilization"),
    ("negative drain", "spec.engine", {"drainTimeoutSeconds": -30}, "spec.engine.drainTimeoutSeconds"),
    ("zero SLO", "spec.slo", {"ttftP95Ms": 0}, "spec.slo.ttftP95Ms"),
    ("negative SLO", "spec.slo", {"itlP95Ms": -50}, "spec.slo.itlP95Ms"),
    ("oversized model name", "spec.model", {"name": "m" * 100_000, "uri": "pvc://models/m"}, "spec.model.name"),
    ("oversized model URI", "spec.model", {"name": "m", "uri": "pvc://models/" + "x" * 100_000}, "spec.model.uri"),
    ("host path model URI", "spec.model", {"name": "m", "uri": "/etc/shadow"}, "spec.model.uri"),
    ("oversized image", "spec.image", "registry.example/" + "i" * 10_000, "spec.image"),
    ("oversized cpu quantity", "spec.resources", {"cpu": "1" * 10_000}, "spec.resources.cpu"),
    ("oversized service name", "metadata.name", "s" * 300, "metadata.name"),
    ("name not a DNS label", "metadata.name", "Chat_Service", "metadata.name"),
    ("huge nodeSelector", "spec.nodeSelector", {f"k{i}": "v" for i in range(10_000)}, "spec.nodeSelector"),
    ("oversized nodeSelector value", "spec.nodeSelector", {"k": "v" * 10_000}, "spec.nodeSelector.k"),
    ("oversized nodeSelector key", "spec.nodeSelector", {"k" * 10_000: "v"}, "spec.nodeSelector"),
    ("huge toleration list", "spec.tolerations", [{"key": "k", "operator": "Exists"}] * 10_000, "spec.tolerations"),
    ("oversized toleration key", "spec.tolerations", [{"key": "k" * 10_000, "operator": "Exists"}],
     "spec.tolerations[0].key"),
    ("negative toleration seconds", "spec.tolerations", [{"key": "k", "operator": "Exists",
                                                          "tolerationSeconds": -1}], "spec.tolerations[0].tolerationSeconds"),
    ("unknown field (e.g. hostNetwork)", "spec.hostNetwork", True, "spec.hostNetwork"),
    ("wrong type", "spec.replicas", "3; rm -rf /", "spec.replicas"),
]


def schema_errors(obj: dict) -> list[str]:
    """Why the CRD's OpenAPI schema and CEL rules refuse `obj` (strict field validation), as the API server would."""
    return validation_errors(load_crd_schema(CRD), obj)


def unbounded_fields(schema: dict, path: str = "spec") -> list[str]:
    """Every field under `schema` with no bound on its size: integers and numbers without minimum and maximum,
    strings without maxLength, enum or a date-time format, arrays without maxItems, maps without maxProperties."""
    kind = schema.get("type")
    out = []
    if kind in ("integer", "number") and not ("minimum" in schema and "maximum" in schema) and "enum" not in schema:
        out.append(f"{path}: {kind} without minimum and maximum")
    if kind == "string" and "maxLength" not in schema and "enum" not in schema and schema.get("format") != "date-time":
        out.append(f"{path}: string without maxLength")
    if kind == "array":
        if "maxItems" not in schema:
            out.append(f"{path}: array without maxItems")
        out += unbounded_fields(schema.get("items", {}), f"{path}[]")
    if kind == "object":
        for name, sub in (schema.get("properties") or {}).items():
            out += unbounded_fields(sub, f"{path}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            if "maxProperties" not in schema:
                out.append(f"{path}: map without maxProperties")
            out += unbounded_fields(extra, f"{path}.*")
    return out


def render_chart(tmp_path: Path, values: dict | None = None) -> list[dict]:
    subprocess.run(["bash", str(REPO / "scripts" / "fetch_helm.sh")], check=True, capture_output=True)
    return render(HELM, tmp_path, values)


def pod_problems(objects: list[dict]) -> list[str]:
    """hardening_problems plus what they leave out: host paths, host ports, a service-account token in a pod that
    never calls the Kubernetes API (the engine)."""
    problems = []
    for name, spec in pod_specs(objects):
        problems += hardening_problems(name, spec)
        for volume in spec.get("volumes", []):
            if "hostPath" in volume:
                problems.append(f"{name}: hostPath volume {volume['name']}")
        for c in spec.get("initContainers", []) + spec["containers"]:
            if any("hostPort" in p for p in c.get("ports", [])):
                problems.append(f"{name}/{c['name']}: hostPort")
            if c.get("securityContext", {}).get("procMount") not in (None, "Default"):
                problems.append(f"{name}/{c['name']}: unmasked /proc")
    return problems


DANGEROUS_VERBS = {"escalate", "bind", "impersonate", "delete", "deletecollection"}


def rbac_problems(objects: list[dict]) -> list[str]:
    """wildcard_problems plus verbs that grant more than the operator's job (changing RBAC, acting as others,
    deleting: children go by ownerReferences) and cluster-wide writes to nodes or RBAC."""
    problems = wildcard_problems(objects)
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "Role"):
            continue
        for i, rule in enumerate(obj.get("rules", [])):
            bad = DANGEROUS_VERBS & set(rule.get("verbs", []))
            if bad:
                problems.append(f"{obj['metadata']['name']} rule {i}: verbs {sorted(bad)}")
            if "rbac.authorization.k8s.io" in rule.get("apiGroups", []):
                problems.append(f"{obj['metadata']['name']} rule {i}: touches RBAC")
            if {"nodes", "pods/exec", "pods/attach", "serviceaccounts/token"} & set(rule.get("resources", [])):
                problems.append(f"{obj['metadata']['name']} rule {i}: node or exec access")
            if "pods" in rule.get("resources", []) and set(rule.get("verbs", [])) - {"get", "list", "watch"}:
                problems.append(f"{obj['metadata']['name']} rule {i}: writes pods")
    return problems


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def kubectl_env(kubeconfig: Path, home: Path) -> dict[str, str]:
    return dict(os.environ, KUBECONFIG=str(kubeconfig), HOME=str(home))


def manifest(obj: dict) -> str:
    return yaml.safe_dump(obj)


__all__ = ["CHART", "CRD", "HOSTILE_SPECS", "REPO", "VALID", "engine_deployments", "free_port", "hostile",
           "kubectl_env", "manifest", "new_token", "pod_problems", "rbac_problems", "render_chart", "schema_errors",
           "unbounded_fields", "yaml"]
