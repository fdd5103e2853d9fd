"""ONE idempotent reconcile per InferenceService: desired children from scratch -> apply the differences -> status.

`plan` is pure (observed state in, actions out); `reconcile` executes a plan through the client.
Running it twice in a row does nothing the second time.
"""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass, field
from typing import Any, Callable

from shoal.operator import builders, kube, labels
from shoal.operator.config import OperatorConfig, ServiceSpec
from shoal.operator.status import build_status, desired_replicas

ChildKey = tuple[str, str, str]  # (kind, namespace, name)


def is_subset(desired: Any, actual: Any) -> bool:
    """Every field we set has our value (fields the API server or others added are not our business)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(is_subset(v, actual.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(actual, list) and len(desired) == len(actual)
                and all(is_subset(d, a) for d, a in zip(desired, actual)))
    if isinstance(desired, (int, float)) and not isinstance(desired, bool) and isinstance(actual, str):
        return str(desired) == actual  # quantities come back as strings
    return desired == actual


def _removed_keys(desired: dict[str, Any] | None, actual: dict[str, Any] | None) -> dict[str, None]:
    return {k: None for k in (actual or {}) if k not in (desired or {})}


def update_patch(kind: str, desired: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that makes `actual` match `desired` in every field we own (lists are replaced whole)."""
    patch = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}
    patch["metadata"] = {k: v for k, v in desired["metadata"].items() if k in ("labels", "ownerReferences")}
    if kind == "Deployment":
        template = patch["spec"]["template"]
        actual_template = (actual.get("spec") or {}).get("template") or {}
        node_selector = dict(template["spec"]["nodeSelector"])
        node_selector.update(_removed_keys(node_selector, (actual_template.get("spec") or {}).get("nodeSelector")))
        template["spec"] = dict(template["spec"], nodeSelector=node_selector)
        patch["spec"] = {k: v for k, v in patch["spec"].items() if k != "selector"}  # immutable
    if kind == "Secret":
        patch.pop("stringData", None)  # the token is never rotated by reconcile
    return patch


@dataclass(frozen=True)
class Action:
    verb: str  # "create" | "patch"
    kind: kube.Kind
    name: str
    body: dict[str, Any]
    why: str


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    replicas: int = 0


def desired_children(isvc: dict[str, Any], spec: ServiceSpec, config: OperatorConfig, replicas: int,
                     runtime_data: dict[str, str] | None, monitoring: bool) -> list[tuple[kube.Kind, dict[str, Any]]]:
    children = [
        (kube.SECRET, builders.build_admin_token_secret(isvc)),
        (kube.CONFIGMAP, builders.build_runtime_configmap(isvc, spec, runtime_data)),
        (kube.DEPLOYMENT, builders.build_deployment(isvc, spec, config, replicas)),
        (kube.SERVICE, builders.build_service(isvc)),
        (kube.PDB, builders.build_pdb(isvc)),
    ]
    if monitoring:
        children.append((kube.SERVICEMONITOR, builders.build_servicemonitor(isvc)))
    return children


def _why(kind: str, desired: dict[str, Any], actual: dict[str, Any]) -> str:
    if kind != "Deployment":
        return "drifted from the spec"
    if not is_subset(desired["spec"]["template"], (actual.get("spec") or {}).get("template")):
        return "pod template changed: rolling out"
    if desired["spec"]["replicas"] != (actual.get("spec") or {}).get("replicas"):
        return f"replicas {(actual.get('spec') or {}).get('replicas')} -> {desired['spec']['replicas']}"
    return "drifted from the spec"


def tuned_limits(status: dict[str, Any]) -> dict[str, str] | None:
    """The batch limits the tuner recorded in status.batch (once it has tuned), as ConfigMap data. The tuner writes
    status first, so after a crash between that write and the ConfigMap's, the ConfigMap is brought in line here."""
    batch = status.get("batch") or {}
    seqs, tokens = batch.get("maxNumSeqs"), batch.get("maxNumBatchedTokens")
    if batch.get("tunedAt") is None or not isinstance(seqs, int) or not isinstance(tokens, int):
        return None
    return {labels.RUNTIME_MAX_NUM_SEQS: str(seqs), labels.RUNTIME_MAX_NUM_BATCHED_TOKENS: str(tokens)}


def plan(isvc: dict[str, Any], config: OperatorConfig, observed: Callable[[kube.Kind, str], dict | None],
         monitoring: bool) -> Plan:
    """Pure: what to create or patch so the children match the spec. `observed(kind, name)` gives the
    current child (None when absent)."""
    spec = ServiceSpec.from_body(isvc.get("spec") or {})
    replicas = desired_replicas(spec, isvc.get("status") or {})
    name = isvc["metadata"]["name"]
    runtime = observed(kube.CONFIGMAP, labels.runtime_configmap_name(name))
    runtime_data = tuned_limits(isvc.get("status") or {}) or (runtime or {}).get("data")
    result = Plan(replicas=replicas)
    for kind, desired in desired_children(isvc, spec, config, replicas, runtime_data, monitoring):
        child_name = desired["metadata"]["name"]
        actual = observed(kind, child_name)
        if actual is None:
            result.actions.append(Action("create", kind, child_name, desired, "missing"))
            continue
        comparable = update_patch(kind.kind, desired, actual)
        if not is_subset(comparable, actual):
            result.actions.append(Action("patch", kind, child_name, comparable, _why(kind.kind, desired, actual)))
    return result


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _apply(action: Action, client: kube.KubeClient, namespace: str,
                 remember: Callable[[kube.Kind, dict], None]) -> str | None:
    """Execute one action; returns what changed (None when the object turned out to be right already)."""
    if action.verb == "patch":
        remember(action.kind, await client.patch(action.kind, namespace, action.name, action.body))
        return f"updated {action.kind.kind} {action.name} ({action.why})"
    try:
        remember(action.kind, await client.create(action.kind, namespace, action.body))
        return f"created {action.kind.kind} {action.name}"
    except kube.ApiError as exc:
        if exc.status != 409:
            raise
    existing = await client.get(action.kind, namespace, action.name)  # the cache was behind
    if existing is None:
        raise kube.ApiError(409, "Conflict", f"{action.kind.kind} {action.name} exists and vanished again")
    remember(action.kind, existing)
    patch = update_patch(action.kind.kind, action.body, existing)
    if is_subset(patch, existing):
        return None
    remember(action.kind, await client.patch(action.kind, namespace, action.name, patch))
    return f"updated {action.kind.kind} {action.name}"


async def _write_status(isvc: dict[str, Any], status: dict[str, Any], client: kube.KubeClient,
                        remember: Callable[[kube.Kind, dict], None]) -> None:
    meta = isvc["metadata"]
    body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}  # no lost updates
    remember(kube.INFERENCESERVICE, await client.patch(kube.INFERENCESERVICE, meta["namespace"], meta["name"], body,
                                                       subresource="status"))


def controlled(isvc: dict[str, Any]) -> bool:
    """Whether the control loop (autoscaler.py) writes this service's replicas or batch limits too."""
    spec = isvc.get("spec") or {}
    return bool((spec.get("autoscaling") or {}).get("enabled") or (spec.get("batchTuning") or {}).get("enabled"))


def _loop_owned(action: Action) -> bool:
    return action.verb == "patch" and action.kind in (kube.DEPLOYMENT, kube.CONFIGMAP)


def _guarded(action: Action, observed: Callable[[kube.Kind, str], dict | None]) -> Action:
    """The patch applies only to the version we planned from (409 otherwise, and a retry with a fresh view)."""
    actual = observed(action.kind, action.name) or {}
    version = (actual.get("metadata") or {}).get("resourceVersion")
    if not version:
        return action
    body = dict(action.body, metadata=dict(action.body.get("metadata") or {}, resourceVersion=version))
    return Action(action.verb, action.kind, action.name, body, action.why)


class PartialReconcile(Exception):
    """Some writes of a reconcile failed; `changes` are those that went through (worth an Event anyway)."""

    def __init__(self, changes: list[str], cause: BaseException):
        super().__init__(str(cause))
        self.changes, self.cause = changes, cause


@dataclass
class Outcome:
    changes: list[str]
    status_written: bool
    replicas: int
    ready: int


async def reconcile(isvc: dict[str, Any], client: kube.KubeClient, config: OperatorConfig,
                    observed: Callable[[kube.Kind, str], dict | None], remember: Callable[[kube.Kind, dict], None],
                    monitoring: bool, error: str | None = None) -> Outcome:
    """Apply the plan, then write status. `remember` feeds the written objects back into the cache."""
    meta = isvc["metadata"]
    namespace = meta["namespace"]
    the_plan = plan(isvc, config, observed, monitoring)
    if controlled(isvc) and any(_loop_owned(a) for a in the_plan.actions):
        # the control loop writes status, then the Deployment or ConfigMap; the cached service may predate the
        # status write, and acting on it would undo the loop's decision (a scale-down flap): re-read it first
        fresh = await client.get(kube.INFERENCESERVICE, namespace, meta["name"])
        if fresh is None or fresh["metadata"].get("uid") != meta.get("uid") or fresh["metadata"].get(
                "deletionTimestamp"):
            return Outcome([], False, the_plan.replicas, 0)  # deleted meanwhile: nothing to reconcile
        remember(kube.INFERENCESERVICE, fresh)
        isvc, meta = fresh, fresh["metadata"]
        the_plan = plan(isvc, config, observed, monitoring)
        the_plan.actions = [_guarded(a, observed) if _loop_owned(a) else a for a in the_plan.actions]
    spec = ServiceSpec.from_body(isvc.get("spec") or {})
    runtime_name = labels.runtime_configmap_name(meta["name"])
    runtime = next((a.body for a in the_plan.actions if a.kind is kube.CONFIGMAP and a.name == runtime_name),
                   None) or observed(kube.CONFIGMAP, runtime_name)
    # status depends on the Deployment's status, which our writes never change: compute it now, so the child
    # writes and the status write all go out together (one round trip per reconcile, not two)
    status = build_status(isvc, spec, observed(kube.DEPLOYMENT, meta["name"]), (runtime or {}).get("data"), error,
                          now_rfc3339())
    writes = [_apply(action, client, namespace, remember) for action in the_plan.actions]
    written_status = not is_subset(status, isvc.get("status") or {})
    if written_status:
        writes.append(_write_status(isvc, status, client, remember))
    results = await asyncio.gather(*writes, return_exceptions=True)
    changes = [r for r in results if isinstance(r, str)]
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise PartialReconcile(changes, failures[0])
    return Outcome(changes, written_status, the_plan.replicas, status["readyReplicas"])
