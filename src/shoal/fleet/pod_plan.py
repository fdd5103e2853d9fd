"""What the local kubelet should do for one Deployment: which pods to create and which to drain.

Pure functions of the Deployment and the pods that exist, like the Deployment and ReplicaSet controllers together:
pods whose template hash differs from the Deployment's current one are replaced once the new ones are Ready
(surge first, so a rollout never drops capacity), surplus pods go not-ready first, then newest first.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

MANAGED_BY = ("app.kubernetes.io/managed-by", "shoal")
TEMPLATE_HASH_LABEL = "pod-template-hash"


@dataclass(frozen=True)
class PodState:
    name: str
    template_hash: str
    ready: bool
    created_seq: int  # creation order; larger is newer
    terminating: bool = False


@dataclass(frozen=True)
class PodPlan:
    create: int = 0
    drain: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeploymentStatus:
    replicas: int
    ready_replicas: int
    updated_replicas: int
    observed_generation: int

    def as_status(self) -> dict:
        return {
            "observedGeneration": self.observed_generation,
            "replicas": self.replicas,
            "updatedReplicas": self.updated_replicas,
            "readyReplicas": self.ready_replicas,
            "availableReplicas": self.ready_replicas,
            "unavailableReplicas": max(0, self.replicas - self.ready_replicas),
        }


def template_hash(template: dict) -> str:
    """A stable short hash of the pod template, as the ReplicaSet controller labels its pods."""
    blob = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def desired_replicas(deployment: dict) -> int:
    replicas = (deployment.get("spec") or {}).get("replicas")
    return 1 if replicas is None else max(0, int(replicas))


def plan_pods(replicas: int, want_hash: str, pods: list[PodState]) -> PodPlan:
    live = [p for p in pods if not p.terminating]
    current = [p for p in live if p.template_hash == want_hash]
    stale = [p for p in live if p.template_hash != want_hash]
    drain: list[str] = []

    surplus = len(current) - replicas
    if surplus > 0:
        # Like the ReplicaSet controller: not-ready pods go first, then the newest.
        order = sorted(current, key=lambda p: (p.ready, -p.created_seq))
        drain += [p.name for p in order[:surplus]]
        current = order[surplus:]

    # Stale pods that are not serving go at once; serving ones only while enough other pods serve.
    ready_total = sum(p.ready for p in current) + sum(p.ready for p in stale)
    for p in sorted(stale, key=lambda p: (p.ready, p.created_seq)):
        if not p.ready:
            drain.append(p.name)
        elif ready_total - 1 >= replicas:
            drain.append(p.name)
            ready_total -= 1
    return PodPlan(create=max(0, replicas - len(current)), drain=tuple(drain))


def deployment_status(deployment: dict, want_hash: str, pods: list[PodState]) -> DeploymentStatus:
    live = [p for p in pods if not p.terminating]
    return DeploymentStatus(
        replicas=len(live),
        ready_replicas=sum(p.ready for p in live),
        updated_replicas=sum(p.template_hash == want_hash for p in live),
        observed_generation=int((deployment.get("metadata") or {}).get("generation") or 0),
    )


@dataclass(frozen=True)
class PodObject:
    """The Pod the kubelet writes for one replica (metadata and spec; status is written separately)."""

    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    body: dict = field(default_factory=dict)


def build_pod(deployment: dict, want_hash: str, suffix: str) -> PodObject:
    meta = deployment["metadata"]
    template = (deployment.get("spec") or {}).get("template") or {}
    labels = {**((template.get("metadata") or {}).get("labels") or {}), TEMPLATE_HASH_LABEL: want_hash}
    annotations = dict((template.get("metadata") or {}).get("annotations") or {})
    name = f"{meta['name']}-{want_hash[:8]}-{suffix}"
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": meta["name"],
                    "uid": meta.get("uid", ""),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {**(template.get("spec") or {}), "nodeName": "local"},
    }
    return PodObject(namespace=meta["namespace"], name=name, labels=labels, body=body)


def pod_status(phase: str, ready: bool, pod_ip: str | None, restart_count: int, started_at: str | None, now: str) -> dict:
    """A Pod status as kubectl and the operator read it: phase, podIP, the Ready condition, one container status."""
    condition = {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now}
    status: dict = {
        "phase": phase,
        "conditions": [condition, {**condition, "type": "ContainersReady"}],
        "containerStatuses": [
            {
                "name": "engine",
                "ready": ready,
                "restartCount": restart_count,
                "started": phase == "Running",
                "state": {"running": {"startedAt": started_at}} if phase == "Running" else {"waiting": {"reason": phase}},
            }
        ],
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
        status["hostIP"] = "127.0.0.1"
    if started_at:
        status["startTime"] = started_at
    return status


def owned_by(pod: dict, deployment: dict) -> bool:
    uid = (deployment.get("metadata") or {}).get("uid")
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Deployment" and (ref.get("uid") == uid or (not uid and ref.get("name") == deployment["metadata"]["name"])):
            return True
    return False
