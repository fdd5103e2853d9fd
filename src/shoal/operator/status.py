"""The InferenceService status, computed from the service and its Deployment (pure)."""

from __future__ import annotations

from typing import Any

from shoal.operator import labels
from shoal.operator.config import ServiceSpec

OWN_CONDITIONS = ("Ready", "Progressing", "Degraded")  # MetricsAvailable, ScalingLimited belong to the autoscaler


def desired_replicas(spec: ServiceSpec, status: dict[str, Any]) -> int:
    """Replica ownership (DESIGN.md): spec.replicas without autoscaling; otherwise the autoscaler's
    status.desiredReplicas (minReplicas until it has decided), kept within [min, max]."""
    if not spec.autoscaling:
        return spec.replicas
    wanted = status.get("desiredReplicas")
    if not isinstance(wanted, int):
        wanted = spec.min_replicas
    return max(spec.min_replicas, min(spec.max_replicas, wanted))


def _condition(kind: str, true: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {"type": kind, "status": "True" if true else "False", "reason": reason, "message": message,
            "observedGeneration": generation}


def own_conditions(generation: int, desired: int, deployment: dict[str, Any] | None,
                   error: str | None) -> list[dict[str, Any]]:
    dstatus = (deployment or {}).get("status") or {}
    ready = int(dstatus.get("readyReplicas") or 0)
    updated = int(dstatus.get("updatedReplicas") or 0)
    rolled = deployment is not None and dstatus.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    if error:
        ready_cond = _condition("Ready", False, "ReconcileFailed", error, generation)
    elif desired == 0:
        ready_cond = _condition("Ready", False, "ScaledToZero", "0 replicas requested", generation)
    elif ready == 0:
        ready_cond = _condition("Ready", False, "NoReadyReplicas", f"0/{desired} replicas ready", generation)
    else:
        ready_cond = _condition("Ready", True, "ReplicasReady", f"{ready}/{desired} replicas ready", generation)
    complete = rolled and updated >= desired and ready >= desired
    progressing = _condition("Progressing", not complete, "RollingOut" if not complete else "RolloutComplete",
                             f"{updated} updated, {ready} ready of {desired}", generation)
    failure = next((c for c in dstatus.get("conditions") or () if c.get("type") == "ReplicaFailure"
                    and c.get("status") == "True"), None)
    if error:
        degraded = _condition("Degraded", True, "ReconcileFailed", error, generation)
    elif failure is not None:
        degraded = _condition("Degraded", True, failure.get("reason", "ReplicaFailure"), failure.get("message", ""),
                              generation)
    else:
        degraded = _condition("Degraded", False, "AsExpected", "children are as specified", generation)
    return [ready_cond, progressing, degraded]


def merge_conditions(existing: list[dict[str, Any]], ours: list[dict[str, Any]], now: str) -> list[dict[str, Any]]:
    """Replace our condition types, keep the others; lastTransitionTime moves only when status flips."""
    by_type = {c.get("type"): c for c in existing or ()}
    replaced = {c["type"] for c in ours}
    merged = [c for c in existing or () if c.get("type") not in replaced]
    for condition in ours:
        before = by_type.get(condition["type"])
        same = before is not None and before.get("status") == condition["status"]
        stamped = dict(condition, lastTransitionTime=before.get("lastTransitionTime", now) if same else now)
        merged.append(stamped)
    order = {t: n for n, t in enumerate(("Ready", "Progressing", "Degraded", "MetricsAvailable", "ScalingLimited"))}
    return sorted(merged, key=lambda c: order.get(c.get("type"), len(order)))


def build_status(isvc: dict[str, Any], spec: ServiceSpec, deployment: dict[str, Any] | None,
                 runtime: dict[str, str] | None, error: str | None, now: str) -> dict[str, Any]:
    meta = isvc["metadata"]
    current = isvc.get("status") or {}
    generation = int(meta.get("generation") or 1)
    desired = desired_replicas(spec, current)
    ready = int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)
    status = {
        "observedGeneration": generation,
        "replicas": ready,
        "readyReplicas": ready,
        "desiredReplicas": desired,
        "selector": labels.selector_string(meta["name"]),
        "endpoint": labels.endpoint(meta["name"], meta["namespace"]),
        "conditions": merge_conditions(current.get("conditions") or [],
                                       own_conditions(generation, desired, deployment, error), now),
    }
    if "batch" not in current and runtime:  # the tuner owns it afterwards
        status["batch"] = {"maxNumSeqs": int(runtime[labels.RUNTIME_MAX_NUM_SEQS]),
                           "maxNumBatchedTokens": int(runtime[labels.RUNTIME_MAX_NUM_BATCHED_TOKENS]),
                           "reason": "startup capacity", "lastTuneTime": now}
    return status


def failed_status(isvc: dict[str, Any], error: str, now: str) -> dict[str, Any]:
    """What status says when a reconcile fails: not Ready, Degraded, with the error as the message."""
    generation = int(isvc["metadata"].get("generation") or 1)
    ours = [_condition("Ready", False, "ReconcileFailed", error, generation),
            _condition("Degraded", True, "ReconcileFailed", error, generation)]
    return {"conditions": merge_conditions((isvc.get("status") or {}).get("conditions") or [], ours, now)}
