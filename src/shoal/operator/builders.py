"""Pure builders: an InferenceService (plus the operator's settings) -> the manifests of its children."""

from __future__ import annotations

import secrets
from typing import Any

from shoal.operator import labels
from shoal.operator.config import OperatorConfig, ServiceSpec, parse_model_uri

PRESTOP_SLEEP_SECONDS = 5  # lets endpoints drop the pod before SIGTERM starts the engine's drain
GRACE_MARGIN_SECONDS = 10


def owner_reference(isvc: dict[str, Any]) -> dict[str, Any]:
    meta = isvc["metadata"]
    return {"apiVersion": labels.API_VERSION, "kind": labels.KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _metadata(isvc: dict[str, Any], name: str) -> dict[str, Any]:
    meta = isvc["metadata"]
    return {"name": name, "namespace": meta["namespace"], "labels": labels.child_labels(meta["name"]),
            "ownerReferences": [owner_reference(isvc)]}


def engine_args(spec: ServiceSpec, model_path: str) -> list[str]:
    """`shoal serve` flags (INTERFACES.md); startup capacity only, the runtime limits come from the ConfigMap."""
    return [
        "serve",
        "--model", model_path,
        "--served-model-name", spec.model_name,
        "--host", "0.0.0.0",
        "--port", str(labels.HTTP_PORT),
        "--device", "cuda" if spec.gpus > 0 else "cpu",
        # on a GPU the HTTP loop and the step loop must not share a GIL (bench/RESULTS.md: 0.36 vs 0.6-1.1 of
        # offline throughput streamed); on a few CPU cores the child's threads contend instead
        "--engine-process", "true" if spec.gpus > 0 else "false",
        "--dtype", spec.dtype,
        "--max-num-seqs", str(spec.max_num_seqs),
        "--max-num-batched-tokens", str(spec.max_num_batched_tokens),
        "--max-model-len", str(spec.max_model_len),
        "--block-size", str(spec.block_size),
        "--admin-token-file", f"{labels.ADMIN_TOKEN_DIR}/{labels.ADMIN_TOKEN_KEY}",
        "--runtime-config-dir", labels.RUNTIME_DIR,
        "--drain-timeout", str(spec.drain_timeout_seconds),
    ]


def _resources(spec: ServiceSpec) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": spec.cpu, "memory": spec.memory}
    if spec.gpus > 0:
        amounts["nvidia.com/gpu"] = spec.gpus
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _probe(path: str, period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures,
            "timeoutSeconds": timeout}


def build_pod_template(isvc: dict[str, Any], spec: ServiceSpec, config: OperatorConfig) -> dict[str, Any]:
    name = isvc["metadata"]["name"]
    model = parse_model_uri(spec.model_uri)
    volumes: list[dict[str, Any]] = [
        {"name": "runtime", "configMap": {"name": labels.runtime_configmap_name(name)}},
        {"name": "admin-token", "secret": {"secretName": labels.admin_token_secret_name(name), "defaultMode": 0o400,
                                           "items": [{"key": labels.ADMIN_TOKEN_KEY, "path": labels.ADMIN_TOKEN_KEY}]}},
        {"name": "tmp", "emptyDir": {}},  # the root filesystem is read-only
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "runtime", "mountPath": labels.RUNTIME_DIR, "readOnly": True},
        {"name": "admin-token", "mountPath": labels.ADMIN_TOKEN_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if model.volume is not None:
        volumes.append(model.volume)
        mounts.append({"name": "model", "mountPath": model.mount_path, "readOnly": True})
    if spec.gpus > 0:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})  # NCCL and pinned-memory staging
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    container = {
        "name": "engine",
        "image": spec.image or config.engine_image,
        "command": ["shoal"],
        "args": engine_args(spec, model.path),
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "XDG_CACHE_HOME", "value": "/tmp/cache"},
            {"name": "TRITON_CACHE_DIR", "value": "/tmp/triton"},
            {"name": "SHOAL_GPU_MEMORY_UTILIZATION", "value": str(spec.gpu_memory_utilization)},
            {"name": "SHOAL_ENABLE_PREFIX_CACHING", "value": "true" if spec.enable_prefix_caching else "false"},
        ],
        "ports": [{"name": "http", "containerPort": labels.HTTP_PORT, "protocol": "TCP"}],
        "resources": _resources(spec),
        "readinessProbe": _probe("/ready", 5, 3),
        "livenessProbe": _probe("/health", 10, 3),
        "startupProbe": _probe("/ready", 5, 180),  # model load may take minutes: 15 min budget
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SLEEP_SECONDS)]}}},
        "volumeMounts": mounts,
        "securityContext": {
            "runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "automountServiceAccountToken": False,  # engines never call the Kubernetes API
        "terminationGracePeriodSeconds": spec.drain_timeout_seconds + PRESTOP_SLEEP_SECONDS + GRACE_MARGIN_SECONDS,
        "securityContext": {"runAsNonRoot": True, "runAsUser": config.engine_uid, "runAsGroup": config.engine_uid,
                            "fsGroup": config.engine_uid, "seccompProfile": {"type": "RuntimeDefault"}},
        "nodeSelector": dict(spec.node_selector),
        "tolerations": [dict(t) for t in spec.tolerations],
    }
    return {
        "metadata": {
            "labels": labels.child_labels(name),
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(labels.HTTP_PORT),
                            "prometheus.io/path": "/metrics"},
        },
        "spec": pod_spec,
    }


def build_deployment(isvc: dict[str, Any], spec: ServiceSpec, config: OperatorConfig, replicas: int) -> dict[str, Any]:
    name = isvc["metadata"]["name"]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _metadata(isvc, name),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels.selector_labels(name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": build_pod_template(isvc, spec, config),
        },
    }


def build_service(isvc: dict[str, Any]) -> dict[str, Any]:
    name = isvc["metadata"]["name"]
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _metadata(isvc, name),
        "spec": {"type": "ClusterIP", "selector": labels.selector_labels(name),
                 "ports": [{"name": "http", "port": labels.HTTP_PORT, "targetPort": "http", "protocol": "TCP"}]},
    }


def runtime_limits(spec: ServiceSpec, current: dict[str, str] | None) -> dict[str, str]:
    """Runtime batch limits for the ConfigMap: keep what the tuner wrote, clipped to the startup capacity."""
    def pick(key: str, capacity: int, floor: int) -> str:
        value = (current or {}).get(key, "")
        if not str(value).strip().isdigit():
            return str(capacity)
        return str(max(floor, min(int(value), capacity)))

    return {labels.RUNTIME_MAX_NUM_SEQS: pick(labels.RUNTIME_MAX_NUM_SEQS, spec.max_num_seqs, 1),
            labels.RUNTIME_MAX_NUM_BATCHED_TOKENS: pick(labels.RUNTIME_MAX_NUM_BATCHED_TOKENS,
                                                        spec.max_num_batched_tokens, spec.block_size)}


def build_runtime_configmap(isvc: dict[str, Any], spec: ServiceSpec,
                            current_data: dict[str, str] | None = None) -> dict[str, Any]:
    name = isvc["metadata"]["name"]
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(isvc, labels.runtime_configmap_name(name)),
            "data": runtime_limits(spec, current_data)}


def build_admin_token_secret(isvc: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    """Created once: reconcile never rotates it (pods and the autoscaler hold the token)."""
    name = isvc["metadata"]["name"]
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _metadata(isvc, labels.admin_token_secret_name(name)),
            "stringData": {labels.ADMIN_TOKEN_KEY: token or secrets.token_urlsafe(32)}}


def build_pdb(isvc: dict[str, Any]) -> dict[str, Any]:
    name = isvc["metadata"]["name"]
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _metadata(isvc, name),
            # one pod at a time: node drains proceed even at one replica, never all replicas at once
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels.selector_labels(name)}}}


def build_servicemonitor(isvc: dict[str, Any]) -> dict[str, Any]:
    name = isvc["metadata"]["name"]
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": _metadata(isvc, name),
        "spec": {
            "selector": {"matchLabels": labels.selector_labels(name)},
            "namespaceSelector": {"matchNames": [isvc["metadata"]["namespace"]]},
            "endpoints": [{
                "port": "http", "path": "/metrics", "interval": "15s",
                # the operator's PromQL selects on `namespace` and `service` (= shoal.dev/service)
                "relabelings": [{"sourceLabels": ["__meta_kubernetes_service_label_shoal_dev_service"],
                                 "targetLabel": "service"}],
            }],
        },
    }
