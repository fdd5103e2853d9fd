"""The work queue between kopf's watch events and the reconcile: caches, coalescing, one reconcile per key.

kopf delivers events for InferenceServices and their children; the handlers hand them here. Events update
the caches and enqueue the owning service. Workers reconcile each queued service; a service is never
reconciled twice at once, and events arriving mid-reconcile coalesce into one more run. Failures requeue
with exponential backoff; a periodic resync re-checks everything (level-triggered, not edge-triggered).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from shoal.operator import kube, labels
from shoal.operator.config import OperatorConfig
from shoal.operator.metrics import OperatorMetrics
from shoal.operator.reconcile import PartialReconcile, is_subset, now_rfc3339, reconcile
from shoal.operator.status import failed_status

Key = tuple[str, str]  # (namespace, name) of an InferenceService
STARTUP_ATTEMPTS = 8
CHILD_KINDS = (kube.DEPLOYMENT, kube.SERVICE, kube.CONFIGMAP, kube.SECRET, kube.PDB, kube.SERVICEMONITOR)
log = logging.getLogger("shoal.operator")


def _rv(obj: dict[str, Any]) -> int:
    text = obj.get("metadata", {}).get("resourceVersion", "")
    return int(text) if str(text).isdigit() else -1


class Controller:
    def __init__(self, config: OperatorConfig, client: kube.KubeClient, metrics: OperatorMetrics):
        self.config = config
        self.client = client
        self.metrics = metrics
        self.services: dict[Key, dict[str, Any]] = {}
        self.children: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.monitoring = False
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        self._dirty: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._tasks: list[asyncio.Task] = []
        self._events: set[asyncio.Task] = set()  # Events in flight: a hung call must not hold a worker

    # -- cache feeding (from kopf events and our own writes) ----------------------------------------------
    def observe_service(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self.services.pop(key, None)
            self._failures.pop(key, None)
            self.metrics.forget(*key)
            return
        self._keep(self.services, key, body)
        self.enqueue(key)

    def observe_child(self, kind: kube.Kind, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        cache_key = (kind.kind, meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self.children.pop(cache_key, None)
        else:
            self._keep(self.children, cache_key, body)
        owner = (meta.get("labels") or {}).get(labels.SERVICE)
        if owner and (meta["namespace"], owner) in self.services:
            self.enqueue((meta["namespace"], owner))

    def remember(self, kind: kube.Kind, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        if kind is kube.INFERENCESERVICE:
            self._keep(self.services, (meta["namespace"], meta["name"]), body)
        else:
            self._keep(self.children, (kind.kind, meta["namespace"], meta["name"]), body)

    @staticmethod
    def _keep(cache: dict, key: Any, body: dict[str, Any]) -> None:
        old = cache.get(key)
        if old is None or _rv(body) < 0 or _rv(body) >= _rv(old):  # a late watch event never rolls back
            cache[key] = body

    def observed_in(self, namespace: str) -> Callable[[kube.Kind, str], dict | None]:
        return lambda kind, name: self.children.get((kind.kind, namespace, name))

    # -- queue ---------------------------------------------------------------------------------------------
    def enqueue(self, key: Key) -> None:
        if key in self._running:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def start(self) -> None:
        for attempt in range(1, STARTUP_ATTEMPTS + 1):  # the API server may fail a call or two: retry, then give up
            try:
                self.monitoring = await self.client.serves(kube.SERVICEMONITOR)
                await self._warm_children()
                break
            except kube.ApiError as exc:
                if attempt == STARTUP_ATTEMPTS:
                    raise
                log.warning("operator start: %s; retrying (%d/%d)", exc, attempt, STARTUP_ATTEMPTS)
                await asyncio.sleep(min(10.0, 0.5 * 2 ** (attempt - 1)))
        self._tasks = [asyncio.create_task(self._worker(), name=f"shoal-reconcile-{n}")
                       for n in range(self.config.workers)]
        self._tasks.append(asyncio.create_task(self._resync(), name="shoal-resync"))

    async def stop(self) -> None:
        tasks = self._tasks + list(self._events)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks, self._events = [], set()

    async def _warm_children(self) -> None:
        """One LIST per kind, so a restarted operator does not mistake unseen children for missing ones."""
        namespaces = [None] if self.config.all_namespaces else list(self.config.namespaces)
        selector = f"{labels.MANAGED_BY}={labels.MANAGER}"
        for kind in CHILD_KINDS:
            if kind is kube.SERVICEMONITOR and not self.monitoring:
                continue
            for namespace in namespaces:
                for body in await self.client.list(kind, namespace, selector):
                    self.remember(kind, body)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            try:
                await self._refresh_monitoring()
            except Exception as exc:  # discovery hiccups must not stop the resync
                log.warning("ServiceMonitor discovery failed: %s", exc)
            for key in list(self.services):
                self.enqueue(key)

    async def _refresh_monitoring(self) -> None:
        monitoring = await self.client.serves(kube.SERVICEMONITOR)
        if monitoring and not self.monitoring:  # the Prometheus operator arrived: adopt what exists
            for namespace in [None] if self.config.all_namespaces else list(self.config.namespaces):
                for body in await self.client.list(kube.SERVICEMONITOR, namespace,
                                                   f"{labels.MANAGED_BY}={labels.MANAGER}"):
                    self.remember(kube.SERVICEMONITOR, body)
        self.monitoring = monitoring

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._running.add(key)
            try:
                await self._reconcile(key)
            except Exception:  # a bug must not kill the worker, nor leave the key to the slow resync
                log.exception("unexpected failure while reconciling %s/%s", *key)
                self._retry_later(key)
            finally:
                self._running.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.enqueue(key)

    async def _reconcile(self, key: Key) -> None:
        body = self.services.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return  # deleted: the API server's garbage collector removes the children
        started = time.perf_counter()
        try:
            outcome = await reconcile(body, self.client, self.config, self.observed_in(key[0]), self.remember,
                                      self.monitoring)
        except Exception as exc:  # any failure: count it, say so in status, retry later
            cause = exc.cause if isinstance(exc, PartialReconcile) else exc
            if isinstance(exc, PartialReconcile) and exc.changes:
                self.post_event_later(body, "Normal", self._reason(body, exc.changes), "; ".join(exc.changes))
            self.metrics.reconcile_errors.labels(reason=type(cause).__name__).inc()
            delay = self._retry_later(key, getattr(cause, "retry_after", None))
            if not isinstance(cause, kube.ApiError) or cause.status != 409:  # 409: a concurrent writer, retry
                log.warning("reconcile of %s/%s failed (%s), retrying in %.1fs", *key, cause, delay)
                await self._report_failure(key, body, cause)
            return
        finally:
            self.metrics.reconcile_duration.observe(time.perf_counter() - started)
        self._failures.pop(key, None)
        self.metrics.desired_replicas.labels(namespace=key[0], service=key[1]).set(outcome.replicas)
        self.metrics.ready_replicas.labels(namespace=key[0], service=key[1]).set(outcome.ready)
        if outcome.changes:
            self.post_event_later(body, "Normal", self._reason(body, outcome.changes), "; ".join(outcome.changes))

    def _retry_later(self, key: Key, at_least: float | None = None) -> float:
        """Requeue with exponential backoff (0.5 s doubling to 60 s), or later if the server asked (Retry-After)."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = max(min(60.0, 0.5 * 2 ** (failures - 1)), at_least or 0.0)
        asyncio.get_running_loop().call_later(delay, self.enqueue, key)
        return delay

    @staticmethod
    def _reason(body: dict[str, Any], changes: list[str]) -> str:
        """`Restored` when a child had to be created again for a service that was already reconciled."""
        reconciled_before = bool((body.get("status") or {}).get("observedGeneration"))
        return "Restored" if reconciled_before and any(c.startswith("created") for c in changes) else "Reconciled"

    async def post_event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            await self.client.post_event(body, type_, reason, message, now_rfc3339())
        except (kube.ApiError, OSError, asyncio.TimeoutError) as exc:  # events are auxiliary: log, go on
            log.warning("could not post event %s on %s: %s", reason, body["metadata"]["name"], exc)

    def post_event_later(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Post an Event in the background: the worker goes on to the next reconcile."""
        task = asyncio.create_task(self.post_event(body, type_, reason, message))
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def _report_failure(self, key: Key, body: dict[str, Any], exc: Exception) -> None:
        message = str(exc)[:500]
        self.post_event_later(body, "Warning", "ReconcileFailed", message)
        status = failed_status(body, message, now_rfc3339())
        if is_subset(status, body.get("status") or {}):
            return
        try:
            updated = await self.client.patch(kube.INFERENCESERVICE, key[0], key[1], {"status": status},
                                              subresource="status")
            self.remember(kube.INFERENCESERVICE, updated)
        except kube.ApiError as write_error:
            log.warning("could not record the failure in %s/%s status: %s", *key, write_error)
