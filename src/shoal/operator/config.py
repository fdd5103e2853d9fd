"""The operator's settings (one object, validated at construction) and the parsed InferenceService spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_ENGINE_IMAGE = "ghcr.io/shoal-dev/shoal-engine:0.1.0"
PERIOD_ENV = "SHOAL_AUTOSCALER_PERIOD_SECONDS"  # the default of `shoal operator --control-period`
DEFAULT_PERIOD_S = 15.0


@dataclass(frozen=True)
class OperatorConfig:
    engine_image: str = DEFAULT_ENGINE_IMAGE
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    prometheus_url: str | None = None
    liveness_port: int | None = 8080  # None: no liveness endpoint
    metrics_port: int | None = 9090  # None: no metrics endpoint
    peering_name: str = "shoal"
    peering_priority: int | None = None  # None: random, so among replicas the highest one acts, the rest wait
    standalone: bool = False
    workers: int = 1  # concurrent reconciles (different services; one service never runs twice at once)
    resync_seconds: float = 300.0
    engine_uid: int = 1000
    control_period_s: float = DEFAULT_PERIOD_S  # the autoscaler's kopf timer interval per InferenceService
    extra_labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.engine_image:
            raise ValueError("engine_image must not be empty: pass --engine-image")
        if self.all_namespaces and self.namespaces:
            raise ValueError("use either --namespace or --all-namespaces, not both")
        if not self.all_namespaces and not self.namespaces:
            raise ValueError("name at least one --namespace, or pass --all-namespaces")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.resync_seconds <= 0:
            raise ValueError(f"resync_seconds must be > 0, got {self.resync_seconds}")
        if not self.control_period_s >= 1.0:  # also rejects NaN
            raise ValueError(f"control_period_s must be >= 1 second, got {self.control_period_s}: "
                             f"pass --control-period (or set {PERIOD_ENV})")


@dataclass(frozen=True)
class ModelSource:
    """Where the engine finds its weights: a volume to mount (or none) and the path inside the pod."""

    path: str
    volume: dict[str, Any] | None = None
    mount_path: str | None = None


def parse_model_uri(uri: str) -> ModelSource:
    if uri.startswith("pvc://"):
        claim, _, sub = uri[len("pvc://"):].partition("/")
        if not claim:
            raise ValueError(f"spec.model.uri {uri!r}: pvc:// needs a claim name, as pvc://<claim>/<path>")
        return ModelSource(path="/models/" + sub.strip("/") if sub.strip("/") else "/models",
                           volume={"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}},
                           mount_path="/models")
    if uri.startswith("file://"):
        return ModelSource(path=uri[len("file://"):])
    if uri.startswith("hf://"):
        return ModelSource(path=uri)  # the engine resolves hf:// itself (needs network in the cluster)
    raise ValueError(f"spec.model.uri {uri!r} must start with pvc://, hf:// or file:///")


def _get(spec: dict[str, Any], section: str, key: str, default: Any) -> Any:
    value = (spec.get(section) or {}).get(key)
    return default if value is None else value


@dataclass(frozen=True)
class ServiceSpec:
    """An InferenceService's spec with the CRD's defaults filled in (the API server fills them too)."""

    model_name: str
    model_uri: str
    dtype: str
    image: str
    gpus: int
    cpu: str
    memory: str
    max_model_len: int
    block_size: int
    gpu_memory_utilization: float
    max_num_seqs: int
    max_num_batched_tokens: int
    enable_prefix_caching: bool
    drain_timeout_seconds: int
    replicas: int
    autoscaling: bool
    min_replicas: int
    max_replicas: int
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]

    @classmethod
    def from_body(cls, spec: dict[str, Any]) -> "ServiceSpec":
        model = spec.get("model") or {}
        if not model.get("name") or not model.get("uri"):
            raise ValueError("spec.model.name and spec.model.uri are required")
        return cls(
            model_name=model["name"], model_uri=model["uri"], dtype=model.get("dtype") or "bfloat16",
            image=spec.get("image") or "",
            gpus=int(_get(spec, "resources", "gpus", 1)), cpu=str(_get(spec, "resources", "cpu", "4")),
            memory=str(_get(spec, "resources", "memory", "32Gi")),
            max_model_len=int(_get(spec, "engine", "maxModelLen", 8192)),
            block_size=int(_get(spec, "engine", "blockSize", 16)),
            gpu_memory_utilization=float(_get(spec, "engine", "gpuMemoryUtilization", 0.9)),
            max_num_seqs=int(_get(spec, "engine", "maxNumSeqs", 256)),
            max_num_batched_tokens=int(_get(spec, "engine", "maxNumBatchedTokens", 8192)),
            enable_prefix_caching=bool(_get(spec, "engine", "enablePrefixCaching", True)),
            drain_timeout_seconds=int(_get(spec, "engine", "drainTimeoutSeconds", 30)),
            replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
            autoscaling=bool(_get(spec, "autoscaling", "enabled", False)),
            min_replicas=int(_get(spec, "autoscaling", "minReplicas", 1)),
            max_replicas=int(_get(spec, "autoscaling", "maxReplicas", 4)),
            node_selector=dict(spec.get("nodeSelector") or {}),
            tolerations=list(spec.get("tolerations") or []),
        )
