"""The control loop (DESIGN: the control loop): a kopf timer per InferenceService.

Every period: Prometheus -> MetricsSnapshot -> plan_replicas / tune_batch_limits (pure, planners.py) -> actions:
status first (desiredReplicas, autoscaling, batch, conditions MetricsAvailable and ScalingLimited; the planner
state rides along so a restarted operator resumes), then the Deployment's replicas, then new batch limits on every
ready pod (PATCH /admin/runtime-config with the service's admin token) and in the `<name>-runtime` ConfigMap so
new pods start tuned, and an Event for every scale or tune.

The timer ticks once per control period (OperatorConfig.control_period_s: `shoal operator --control-period`, whose
default is SHOAL_AUTOSCALER_PERIOD_SECONDS, else 15 s). run_operator registers it into each run's own registry, so
the operator does no per-second work per service.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf

from shoal.operator import kube, labels
from shoal.operator.planners import (
    BatchDecision, BatchState, MetricsSnapshot, PlannerSpec, ReplicaDecision, ReplicaState, plan_replicas,
    tune_batch_limits,
)
from shoal.operator.prometheus import NO_SAMPLES, NO_SERIES, PrometheusClient, ServiceMetrics, covering
from shoal.operator.status import merge_conditions

POD = kube.Kind("v1", "pods", "Pod")
TIMER_ID = "autoscaler"
log = logging.getLogger("shoal.autoscaler")


def rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def autoscaler_tick(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    spec = body.get("spec") or {}
    if not (spec.get("autoscaling") or {}).get("enabled") and not (spec.get("batchTuning") or {}).get("enabled"):
        return
    if memo.get("client") is None:  # the operator's startup has not run yet
        return
    if memo.get("autoscaler_pushed") is None:
        memo.autoscaler_pushed = {}
    await control_once(memo.client, _prometheus(memo), _engines(memo), dict(body), time.time(),
                       pushed=memo.autoscaler_pushed)


def register_timer(registry: kopf.OperatorRegistry, period_s: float) -> None:
    """The timer, every `period_s` from the start of one tick to the next (sharp), into `registry`."""
    kopf.timer(labels.GROUP, labels.VERSION, labels.PLURAL, interval=period_s, sharp=True, id=TIMER_ID,
               registry=registry)(autoscaler_tick)
    _without_finalizer(registry, TIMER_ID)


def _without_finalizer(registry: kopf.OperatorRegistry, handler_id: str) -> None:
    """kopf gives every timer a finalizer on its objects. The operator may not patch InferenceServices (RBAC grants
    only their status, so GitOps sees no drift) and a finalizer would also make them undeletable without it; a
    timer needs none, since kopf stops it when the object is gone. kopf has no flag for this: swap the handler."""
    spawning = registry._spawning
    spawning._handlers = [dataclasses.replace(h, requires_finalizer=False) if h.id == handler_id else h
                          for h in spawning._handlers]


@kopf.on.cleanup()
async def close_autoscaler_clients(memo: kopf.Memo, **_: Any) -> None:
    for name in ("autoscaler_prometheus", "autoscaler_engines"):
        client = memo.get(name)
        if client is not None:
            await client.close()


def _prometheus(memo: kopf.Memo) -> PrometheusClient | None:
    url = getattr(memo.get("config"), "prometheus_url", None)
    if not url:
        return None
    if memo.get("autoscaler_prometheus") is None:
        memo.autoscaler_prometheus = PrometheusClient(url)
    return memo.autoscaler_prometheus


def _engines(memo: kopf.Memo) -> aiohttp.ClientSession:
    """One HTTP client for the engines' admin endpoints."""
    if memo.get("autoscaler_engines") is None:
        memo.autoscaler_engines = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    return memo.autoscaler_engines


@dataclass(frozen=True)
class Outcome:
    replicas: ReplicaDecision | None
    batch: BatchDecision | None
    pushed: int = 0  # pods that took the new limits


async def control_once(client: kube.KubeClient, prometheus: PrometheusClient | None,
                       engines: aiohttp.ClientSession, isvc: dict[str, Any], now: float,
                       pushed: dict[tuple[str, str], tuple[int, int]] | None = None) -> Outcome | None:
    """One tick for one service. `pushed` remembers, per service, the batch limits this operator process saw every
    ready pod take: tuned limits in status.batch that it has not pushed (a crash between the status write and the
    push, a pod that refused) are pushed again on the next tick with data, so pods converge on status.batch without
    waiting for the tuner's next change."""
    meta = isvc["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    raw_spec = isvc.get("spec") or {}
    try:
        spec = PlannerSpec.from_service_spec(raw_spec)
    except ValueError as exc:
        log.warning("%s/%s: autoscaler skipped: %s", namespace, name, exc)
        return None
    deployment = await client.get(kube.DEPLOYMENT, namespace, name)
    if deployment is None:  # the reconcile creates it
        return None
    current = int((deployment.get("spec") or {}).get("replicas") or 0)
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    metrics = await _read_metrics(prometheus, namespace, name, ready)
    snap = MetricsSnapshot(now, metrics.ttft_p95_s, metrics.itl_p95_s, metrics.waiting, metrics.running,
                           metrics.kv_usage, metrics.arrival_rate, ready_replicas=ready, current_replicas=current)
    status = isvc.get("status") or {}
    autoscaling = bool((raw_spec.get("autoscaling") or {}).get("enabled"))
    rdec = plan_replicas(snap, ReplicaState.from_status((status.get("autoscaling") or {}).get("planner")), spec) \
        if autoscaling else None
    bdec = tune_batch_limits(snap, BatchState.from_status(status.get("batch"), spec), spec)

    await _write_status(client, isvc, spec, snap, metrics, rdec, bdec, now)
    if rdec is not None and rdec.replicas != current:
        await client.patch(kube.DEPLOYMENT, namespace, name, {"spec": {"replicas": rdec.replicas}})
        await _event(client, isvc, "Normal", "Scaled", rdec.reason)
        log.info("%s/%s: %s", namespace, name, rdec.reason)
    took = 0
    limits = (bdec.state.max_num_seqs, bdec.state.max_num_batched_tokens)
    # re-push only what was tuned (pods start at the ConfigMap's limits), and not while blind: no data holds all
    unsent = pushed is not None and pushed.get((namespace, name)) != limits and status.get("batch") is not None
    if bdec.changed or (spec.batch_tuning and unsent and not snap.missing()):
        took, complete = await _push_limits(client, engines, isvc, bdec.state)
        if pushed is not None and complete:
            pushed[(namespace, name)] = limits
    if bdec.changed:
        await client.patch(kube.CONFIGMAP, namespace, labels.runtime_configmap_name(name), {"data": {
            labels.RUNTIME_MAX_NUM_SEQS: str(bdec.state.max_num_seqs),
            labels.RUNTIME_MAX_NUM_BATCHED_TOKENS: str(bdec.state.max_num_batched_tokens)}})
        await _event(client, isvc, "Normal", "Tuned", f"{bdec.reason} (pushed to {took} ready pod(s))")
        log.info("%s/%s: %s", namespace, name, bdec.reason)
    return Outcome(rdec, bdec, took)


async def _read_metrics(prometheus: PrometheusClient | None, namespace: str, name: str,
                        ready: int) -> ServiceMetrics:
    """The service's metrics, or none with why: the planners hold on anything less than every engine's data."""
    if prometheus is None:
        return ServiceMetrics(errors={"prometheus": "the operator has no Prometheus URL (--prometheus-url)"},
                              failures={"prometheus": "NoPrometheus"})
    try:
        return covering(await prometheus.service_metrics(namespace, name), ready)
    except Exception as exc:  # the adapter is total; should it still fail, the loop holds and says why
        log.exception("%s/%s: reading metrics failed", namespace, name)
        return ServiceMetrics(errors={"prometheus": f"reading metrics failed: {exc.__class__.__name__}: {exc}"},
                              failures={"prometheus": "MetricsQueryFailed"})


def metrics_condition(snap: MetricsSnapshot, metrics: ServiceMetrics) -> tuple[str, str, str]:
    """MetricsAvailable as (status, reason, message): the reason names what failed (pure)."""
    if not snap.missing() and snap.ready_replicas > 0:
        return "True", "MetricsFresh", "Prometheus answered every control-loop query"
    if "prometheus" in metrics.errors:
        return "False", metrics.failures.get("prometheus", "NoPrometheus"), metrics.errors["prometheus"]
    if snap.ready_replicas == 0:
        return "False", "NoReadyReplicas", "no ready engine to measure; holding the replica count"
    missing = snap.missing()
    kind = metrics.failure_of(missing)
    reason = "MetricsMissing" if kind in ("", NO_SERIES, NO_SAMPLES) else kind
    by_why: dict[str, list[str]] = {}
    for name in missing:
        by_why.setdefault(metrics.errors.get(name, "no data"), []).append(name)
    detail = "; ".join(f"{', '.join(names)}: {why}" for why, names in by_why.items())
    return "False", reason, f"holding the replica count and batch limits; {detail}"[:MAX_MESSAGE]


MAX_MESSAGE = 4096  # status texts are for people (the CRD caps them); Prometheus error texts can be long


async def _write_status(client: kube.KubeClient, isvc: dict[str, Any], spec: PlannerSpec, snap: MetricsSnapshot,
                        metrics: ServiceMetrics, rdec: ReplicaDecision | None, bdec: BatchDecision,
                        now: float) -> None:
    status = isvc.get("status") or {}
    generation = int(isvc["metadata"].get("generation") or 1)
    stamp = rfc3339(now)
    mcond = metrics_condition(snap, metrics)
    conditions = [{"type": "MetricsAvailable", "status": mcond[0], "reason": mcond[1], "message": mcond[2],
                   "observedGeneration": generation}]
    patch: dict[str, Any] = {}
    if rdec is not None:
        limited = rdec.limited
        bound = "maxReplicas" if rdec.replicas == spec.max_replicas else "minReplicas"
        conditions.append({"type": "ScalingLimited", "status": "True" if limited else "False",
                           "reason": ("AtMaxReplicas" if bound == "maxReplicas" else "AtMinReplicas")
                           if limited else "WithinBounds",
                           "message": f"load asks beyond spec.autoscaling.{bound}: {rdec.reason}" if limited
                           else "the load fits within minReplicas..maxReplicas",
                           "observedGeneration": generation})
        before = status.get("autoscaling") or {}
        scaled = rdec.replicas != snap.current_replicas
        patch["desiredReplicas"] = rdec.replicas
        patch["autoscaling"] = {
            "lastScaleTime": stamp if scaled else before.get("lastScaleTime"),
            "lastDecision": {"replicas": rdec.replicas, "reason": rdec.reason[:MAX_MESSAGE], "time": stamp,
                             "ttftP95Ms": _ms(snap.ttft_p95_s), "itlP95Ms": _ms(snap.itl_p95_s),
                             "waiting": snap.waiting},
            "planner": rdec.state.to_status(),
        }
    before_batch = status.get("batch") or {}
    patch["batch"] = {**bdec.state.to_status(), "reason": bdec.reason[:MAX_MESSAGE],
                      "lastTuneTime": stamp if bdec.changed else before_batch.get("lastTuneTime", stamp)}
    patch["conditions"] = merge_conditions(status.get("conditions") or [], conditions, stamp)
    meta = isvc["metadata"]
    await client.patch(kube.INFERENCESERVICE, meta["namespace"], meta["name"], {"status": patch},
                       subresource="status")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def _push_limits(client: kube.KubeClient, engines: aiohttp.ClientSession, isvc: dict[str, Any],
                       state: BatchState) -> tuple[int, bool]:
    """PATCH /admin/runtime-config on every ready pod; returns how many took it and whether all did."""
    meta = isvc["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    secret = await client.get(kube.SECRET, namespace, labels.admin_token_secret_name(name))
    token = _token(secret)
    if token is None:
        await _event(client, isvc, "Warning", "TuneFailed",
                     f"Secret {labels.admin_token_secret_name(name)} has no key {labels.ADMIN_TOKEN_KEY}")
        return 0, False
    pods = await client.list(POD, namespace, labels.selector_string(name))
    targets = [_admin_url(p) for p in pods if _is_ready(p)]
    body = {"maxNumSeqs": state.max_num_seqs, "maxNumBatchedTokens": state.max_num_batched_tokens}
    headers = {"Authorization": f"Bearer {token}"}

    async def push(url: str) -> str | None:
        try:
            async with engines.patch(url, json=body, headers=headers) as resp:
                if resp.status != 200:
                    return f"{url}: {resp.status} {(await resp.text())[:200]}"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return f"{url}: {exc.__class__.__name__}: {exc}"
        return None

    failures = [f for f in await asyncio.gather(*(push(u) for u in targets)) if f]
    if failures:
        await _event(client, isvc, "Warning", "TuneFailed", "; ".join(failures))
    return len(targets) - len(failures), not failures


def _token(secret: dict[str, Any] | None) -> str | None:
    if not secret:
        return None
    encoded = (secret.get("data") or {}).get(labels.ADMIN_TOKEN_KEY)
    if encoded:
        return base64.b64decode(encoded).decode().strip()
    plain = (secret.get("stringData") or {}).get(labels.ADMIN_TOKEN_KEY)
    return plain.strip() if plain else None


def _is_ready(pod: dict[str, Any]) -> bool:
    st = pod.get("status") or {}
    if pod.get("metadata", {}).get("deletionTimestamp") or not st.get("podIP"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or ())


def _admin_url(pod: dict[str, Any]) -> str:
    port = labels.HTTP_PORT
    for container in (pod.get("spec") or {}).get("containers") or ():
        for p in container.get("ports") or ():
            if p.get("name") == "http" and p.get("containerPort"):
                port = int(p["containerPort"])
    return f"http://{pod['status']['podIP']}:{port}/admin/runtime-config"


async def _event(client: kube.KubeClient, isvc: dict[str, Any], type_: str, reason: str, message: str) -> None:
    try:
        await client.post_event(isvc, type_, reason, message, rfc3339(time.time()))
    except kube.ApiError as exc:  # an Event is a courtesy; the decision is already in status
        log.warning("could not post Event %s: %s", reason, exc)
