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

sys.path.insert(0, str(REPO / "tests" / "server"))
from serverkit import build_tiny_model, crash_lines  # noqa: E402

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


def flip(token: str, index: int) -> str:
    """The token with one character changed: same length, differs only at `index`."""
    return token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1:]


def wrong_headers(token: str) -> dict[str, str | None]:
    """Authorization headers that must all get 401 from a server whose token is `token`."""
    return {
        "missing": None, "empty": "", "scheme only": "Bearer", "scheme and space": "Bearer ",
        "other scheme": f"Basic {token}", "no scheme": token,
        "wrong, same length (first char)": f"Bearer {flip(token, 0)}",
        "wrong, same length (middle)": f"Bearer {flip(token, len(token) // 2)}",
        "wrong, same length (last char)": f"Bearer {flip(token, len(token) - 1)}",
        "prefix": f"Bearer {token[:-1]}", "suffix added": f"Bearer {token}x", "doubled": f"Bearer {token}{token}",
        "inner space": f"Bearer {token[:5]} {token[5:]}", "NUL": f"Bearer {token}\x00", "non-ASCII": "Bearer tökén",
        "undecodable byte (surrogate)": f"Bearer {token[:-1]}\udcff", "lone surrogate": "Bearer \ud800",
        "emoji": "Bearer \U0001f511", "1 MB": "Bearer " + "a" * 1_000_000, "two schemes": f"Bearer Bearer {token}",
    }


def raw_request(url: str, method: str, path: str, header_bytes: bytes | None, body: bytes = b"") -> int:
    """One HTTP/1.1 request written byte for byte (so malformed headers reach the server as sent); the status."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {host}".encode(), b"Connection: close",
             b"Content-Type: application/json", f"Content-Length: {len(body)}".encode()]
    if header_bytes is not None:
        lines.append(b"Authorization: " + header_bytes)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


class ServeProbe:
    """A real `shoal serve` (tiny model) at DEBUG with asyncio debug on, sent right, wrong and malformed tokens."""

    def __init__(self, statuses: dict[str, int], log: str, exit_code: int, secrets_sent: list[str]):
        self.statuses, self.log, self.exit_code, self.secrets_sent = statuses, log, exit_code, secrets_sent

    def leaks(self) -> list[str]:
        """Every sent token (or its first 16 characters) found in the whole log."""
        return [s for s in self.secrets_sent for part in (s, s[:16]) if part in self.log]


def probe_serve_log(tmp_path: Path) -> ServeProbe:
    from shoal.engine.model_prepare import prepare
    from shoal.engine.server.launcher import ServerProcess

    model = build_tiny_model(tmp_path / "tiny", prepare("smollm2"))
    token, wrong = new_token(), new_token()
    (tmp_path / "token").write_text(token + "\n")
    log = tmp_path / "serve.log"
    server = ServerProcess(["--model", str(model), "--host", "127.0.0.1", "--port", "0", "--log-level", "debug",
                            "--admin-token-file", str(tmp_path / "token"), "--max-num-seqs", "8"],
                           log_path=log, env={"PYTHONASYNCIODEBUG": "1"}).start()
    admin_path, body, statuses = "/admin/runtime-config", b'{"maxNumSeqs": 4}', {}
    try:
        statuses["right GET"] = raw_request(server.url, "GET", admin_path, f"Bearer {token}".encode())
        statuses["right PATCH"] = raw_request(server.url, "PATCH", admin_path, f"Bearer {token}".encode(), body)
        statuses["wrong"] = raw_request(server.url, "PATCH", admin_path, f"Bearer {wrong}".encode(), body)
        statuses["missing"] = raw_request(server.url, "PATCH", admin_path, None, body)
        statuses["near miss"] = raw_request(server.url, "PATCH", admin_path, f"Bearer {flip(token, 3)}".encode(), body)
        statuses["undecodable"] = raw_request(server.url, "PATCH", admin_path, f"Bearer {wrong}".encode() + b"\xff\xfe",
                                              body)
        statuses["oversized"] = raw_request(server.url, "PATCH", admin_path, f"Bearer {wrong}".encode() * 1000, body)
        statuses["token on another route"] = raw_request(server.url, "GET", "/v1/models", f"Bearer {token}".encode())
    finally:
        server.terminate()
        exit_code = server.wait(60)
    return ServeProbe(statuses, log.read_text(errors="replace"), exit_code, [token, wrong, flip(token, 3)])


def kubectl_env(kubeconfig: Path, home: Path) -> dict[str, str]:
    return dict(os.environ, KUBECONFIG=str(kubeconfig), HOME=str(home))


def manifest(obj: dict) -> str:
    return yaml.safe_dump(obj)


__all__ = ["CHART", "CRD", "HOSTILE_SPECS", "REPO", "VALID", "crash_lines", "engine_deployments", "flip", "free_port",
           "hostile", "kubectl_env", "manifest", "new_token", "pod_problems", "probe_serve_log", "raw_request",
           "rbac_problems", "render_chart", "schema_errors", "unbounded_fields", "wrong_headers", "yaml"]
