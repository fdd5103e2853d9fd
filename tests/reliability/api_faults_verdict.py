"""The verdict on an emulator's objects: are the operator's children exactly the desired ones? The judge is the
operator's own pure planner (`reconcile.plan`): for every InferenceService it must plan nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

ISVCS = "/apis/shoal.dev/v1alpha1/inferenceservices"


def child_kinds(monitoring: bool):
    from shoal.operator import kube

    kinds = [kube.SECRET, kube.CONFIGMAP, kube.DEPLOYMENT, kube.SERVICE, kube.PDB]
    return kinds + [kube.SERVICEMONITOR] if monitoring else kinds


@dataclass
class Verdict:
    services: int = 0
    children: int = 0
    duplicates: list[str] = field(default_factory=list)  # more than one child of a kind for one service
    orphans: list[str] = field(default_factory=list)  # a managed child whose owner is gone or another object
    missing: list[str] = field(default_factory=list)  # a child the spec asks for that does not exist
    drifted: list[str] = field(default_factory=list)  # a child that exists but differs from the spec
    stale: list[str] = field(default_factory=list)  # status not at the spec's generation, or Degraded

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.orphans or self.missing or self.drifted or self.stale)

    def lost(self) -> int:
        """What the desired state lacks at the end (must be 0)."""
        return len(self.missing) + len(self.drifted) + len(self.stale)

    def summary(self) -> str:
        parts = [f"{k}={getattr(self, k)[:5]}" for k in ("duplicates", "orphans", "missing", "drifted", "stale")
                 if getattr(self, k)]
        return f"{self.services} services, {self.children} children" + (": " + "; ".join(parts) if parts else "")


def verdict(api: Any, monitoring: bool, namespace: str | None = None) -> Verdict:
    """Compare the API's objects with what the operator's own pure planner says should exist."""
    from shoal.operator.config import OperatorConfig
    from shoal.operator.reconcile import plan

    config = OperatorConfig(all_namespaces=True)  # `shoal operator`'s defaults: the same desired children
    scope = f"/namespaces/{namespace}" if namespace else ""
    services = {(o["metadata"]["namespace"], o["metadata"]["name"]): o
                for o in api.items(ISVCS.replace("/inferenceservices", f"{scope}/inferenceservices"))}
    result = Verdict(services=len(services))
    observed: dict[tuple[str, str, str], dict] = {}
    per_owner: dict[tuple[str, str, str], int] = {}
    for kind in child_kinds(monitoring):
        for child in api.items(kind.path(namespace) + "?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dshoal"):
            meta = child["metadata"]
            result.children += 1
            where = f"{kind.kind} {meta['namespace']}/{meta['name']}"
            owner = services.get((meta["namespace"], meta.get("labels", {}).get("shoal.dev/service", "")))
            owner_uids = {r.get("uid") for r in meta.get("ownerReferences") or ()}
            if owner is None or owner["metadata"]["uid"] not in owner_uids:
                result.orphans.append(where)
                continue
            key = (kind.kind, meta["namespace"], owner["metadata"]["name"])
            per_owner[key] = per_owner.get(key, 0) + 1
            observed[(kind.kind, meta["namespace"], meta["name"])] = child
    result.duplicates = [f"{k[0]} of {k[1]}/{k[2]} x{n}" for k, n in per_owner.items() if n > 1]
    for (ns, name), isvc in services.items():
        if isvc["metadata"].get("deletionTimestamp"):
            continue
        actions = plan(isvc, config, lambda kind, child, ns=ns: observed.get((kind.kind, ns, child)), monitoring)
        for action in actions.actions:
            (result.missing if action.verb == "create" else result.drifted).append(
                f"{action.kind.kind} {ns}/{action.name} ({action.why})")
        status = isvc.get("status") or {}
        degraded = next((c for c in status.get("conditions") or () if c.get("type") == "Degraded"), {})
        if status.get("observedGeneration") != isvc["metadata"].get("generation") or degraded.get("status") != "False":
            result.stale.append(f"{ns}/{name} (observedGeneration {status.get('observedGeneration')} of "
                                f"{isvc['metadata'].get('generation')}, Degraded {degraded.get('status')})")
    return result


def wait_converged(api: Any, monitoring: bool, timeout: float, namespace: str | None = None,
                   settle_s: float = 1.0) -> tuple[Verdict, float]:
    """Poll until the verdict is clean and stays clean `settle_s` later; returns it and the seconds it took."""
    started = time.monotonic()
    last = Verdict()
    while time.monotonic() - started < timeout:
        last = verdict(api, monitoring, namespace)
        if last.clean:
            time.sleep(settle_s)
            last = verdict(api, monitoring, namespace)
            if last.clean:
                return last, time.monotonic() - started
        time.sleep(0.5)
    return last, time.monotonic() - started
