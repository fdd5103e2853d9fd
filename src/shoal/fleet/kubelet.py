"""The local kubelet: runs the pods of Shoal's Deployments as `shoal serve` processes on this machine.

Each sync it reads the Deployments labelled managed-by=shoal from the API, plans pods with `pod_plan`, starts and
drains local replicas, restarts crashed ones with back-off, probes /ready, and writes back Pod objects (phase, podIP,
Ready) and the Deployments' status, so the operator sees what a real cluster would show it. Each pod gets its own
loopback address (127.x.y.z) on its container port, so `podIP:8000` reaches it as in a cluster.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

from shoal.fleet.cores import CoreSlots, assign_slot
from shoal.fleet.kube import KubeClient, KubeError, apps_path, core_path
from shoal.fleet.local_pod import Placement, PodSpecError, build_command, engine_container
from shoal.fleet.pod_plan import (
    PodState,
    build_pod,
    deployment_status,
    desired_replicas,
    plan_pods,
    pod_status,
    template_hash,
)
from shoal.fleet.prometheus import SERVICE_LABEL, ScrapeTarget
from shoal.fleet.replica import LocalReplica, free_port

log = logging.getLogger("shoal.fleet.kubelet")
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=shoal"
NODE_NAME = "local"
DEFAULT_PORT = 8000


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None


class LoopbackAddresses:
    """Distinct loopback IPs for pods (127.B.x.y; B random per fleet so parallel fleets rarely meet)."""

    def __init__(self, seed: int | None = None) -> None:
        self._base = random.Random(seed).randint(20, 250)
        self._next = 0

    def next(self) -> str:
        self._next += 1
        n = self._next
        return f"127.{self._base}.{(n // 250) % 250}.{n % 250 + 1}"


@dataclass
class TrackedPod:
    replica: LocalReplica
    deployment_uid: str
    deployment_name: str
    template_hash: str
    labels: dict
    seq: int
    grace_s: float = 30.0
    last_status: dict | None = None


class Kubelet:
    def __init__(self, kube: KubeClient, workdir: Path, model_dir: Path, slots: CoreSlots,
                 on_targets=None, sync_interval_s: float = 0.5, serve_prefix: tuple[str, ...] = ()) -> None:
        self.kube = kube
        self.workdir = workdir
        self.model_dir = model_dir
        self.slots = slots
        self.on_targets = on_targets  # called with [ScrapeTarget] whenever pods come or go
        self.sync_interval_s = sync_interval_s
        self.serve_prefix = serve_prefix  # the engine command; default `python -m shoal serve`
        self.pods: dict[tuple[str, str], TrackedPod] = {}
        self.addresses = LoopbackAddresses()
        self._seq = 0
        self._status_subresource = True
        self._http: aiohttp.ClientSession | None = None
        self.events: list[str] = []  # short human lines for the live view

    # -- the loop -------------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self._http = aiohttp.ClientSession()
        try:
            while not stop.is_set():
                try:
                    await self.sync_once()
                except (KubeError, aiohttp.ClientError, asyncio.TimeoutError) as e:
                    log.warning("kubelet sync failed (retrying): %s", e)
                try:
                    await asyncio.wait_for(stop.wait(), self.sync_interval_s)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self._http.close()
            self._http = None

    async def sync_once(self) -> None:
        deployments = await self.kube.list(apps_path(None, "deployments"), MANAGED_SELECTOR)
        by_uid = {d["metadata"].get("uid") or d["metadata"]["name"]: d for d in deployments}
        api_pods = {
            (p["metadata"]["namespace"], p["metadata"]["name"]): p
            for p in await self.kube.list(core_path(None, "pods"))
            if (p.get("spec") or {}).get("nodeName") == NODE_NAME
        }
        # Pods deleted through the API (kubectl delete pod, garbage collection) or whose Deployment is gone: drain.
        for key, tracked in self.pods.items():
            if not tracked.replica.state.draining and (key not in api_pods or tracked.deployment_uid not in by_uid):
                self._drain(key, "pod deleted" if key not in api_pods else "deployment deleted")
        # Pod objects nobody runs (left by an earlier fleet): remove them.
        for key in api_pods.keys() - self.pods.keys():
            await self.kube.delete(core_path(key[0], "pods", key[1]))
        for uid, deployment in by_uid.items():
            await self._sync_deployment(uid, deployment)
        await self._sync_processes()
        self._publish_targets()

    async def _sync_deployment(self, uid: str, deployment: dict) -> None:
        template = (deployment.get("spec") or {}).get("template") or {}
        want = template_hash(template)
        mine = {k: t for k, t in self.pods.items() if t.deployment_uid == uid}
        states = [
            PodState(name=k[1], template_hash=t.template_hash, ready=t.replica.state.ready, created_seq=t.seq,
                     terminating=t.replica.state.draining)
            for k, t in mine.items()
        ]
        plan = plan_pods(desired_replicas(deployment), want, states)
        namespace = deployment["metadata"]["namespace"]
        for name in plan.drain:
            self._drain((namespace, name), "scale down" if mine[(namespace, name)].template_hash == want else "rollout")
        for _ in range(plan.create):
            if not await self._create_pod(uid, deployment, want):
                break
        status = deployment_status(deployment, want, [
            PodState(k[1], t.template_hash, t.replica.state.ready, t.seq, t.replica.state.draining)
            for k, t in self.pods.items() if t.deployment_uid == uid
        ]).as_status()
        if (deployment.get("status") or {}) != {**(deployment.get("status") or {}), **status}:
            await self._patch_status(apps_path(namespace, "deployments", deployment["metadata"]["name"]), status)

    async def _create_pod(self, uid: str, deployment: dict, want: str) -> bool:
        namespace = deployment["metadata"]["namespace"]
        spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
        slot = assign_slot(self.slots, {k[1]: t.replica.slot for k, t in self.pods.items() if not t.replica.state.draining})
        try:
            configmaps, secrets_ = await self._mounted_objects(namespace, spec)
            pod = build_pod(deployment, want, secrets.token_hex(3)[:5])
            placement = self._placement(pod.namespace, pod.name, spec, self.slots.slots[slot])
            command = build_command(spec, configmaps, secrets_, placement, self.serve_prefix)
        except PodSpecError as e:
            self._event(f"{namespace}/{deployment['metadata']['name']}: waiting: {e}")
            return False
        body = pod.body
        _set_container_port(body["spec"], placement.port)
        await self.kube.create(core_path(namespace, "pods"), body)
        replica = LocalReplica((namespace, pod.name), command, placement, slot)
        self._seq += 1
        grace = float(spec.get("terminationGracePeriodSeconds") or 30)
        self.pods[(namespace, pod.name)] = TrackedPod(replica, uid, deployment["metadata"]["name"], want, pod.labels,
                                                      self._seq, grace)
        replica.start()
        self._event(f"{namespace}/{pod.name}: started on cores {list(placement.cores)} at {replica.address} (pid {replica.pid})")
        return True

    def _placement(self, namespace: str, name: str, spec: dict, cores: tuple[int, ...]) -> Placement:
        host = self.addresses.next()
        port = free_port(host, preferred=_container_port(spec))
        return Placement(pod_dir=self.workdir / "pods" / namespace / name, host=host, port=port,
                         cores=cores, model_dir=self.model_dir)

    async def _mounted_objects(self, namespace: str, spec: dict):
        configmaps: dict[str, dict] = {}
        secret_data: dict[str, dict] = {}
        container = engine_container(spec)
        names_cm = {v["configMap"]["name"] for v in spec.get("volumes") or [] if "configMap" in v}
        names_secret = {v["secret"]["secretName"] for v in spec.get("volumes") or [] if "secret" in v}
        for item in container.get("env") or []:
            source = item.get("valueFrom") or {}
            if "secretKeyRef" in source:
                names_secret.add(source["secretKeyRef"]["name"])
            if "configMapKeyRef" in source:
                names_cm.add(source["configMapKeyRef"]["name"])
        for name in names_cm:
            obj = await self.kube.get(core_path(namespace, "configmaps", name))
            if obj is not None:
                configmaps[name] = obj.get("data") or {}
        for name in names_secret:
            obj = await self.kube.get(core_path(namespace, "secrets", name))
            if obj is not None:
                secret_data[name] = obj.get("data") or {}
        return configmaps, secret_data

    def _drain(self, key: tuple[str, str], why: str) -> None:
        tracked = self.pods[key]
        tracked.replica.drain(tracked.grace_s)
        self._event(f"{key[0]}/{key[1]}: draining ({why})")

    async def _sync_processes(self) -> None:
        assert self._http is not None
        for key, tracked in list(self.pods.items()):
            replica = tracked.replica
            outcome = replica.poll()
            if outcome == "exited":
                del self.pods[key]
                await self.kube.delete(core_path(key[0], "pods", key[1]))
                self._event(f"{key[0]}/{key[1]}: stopped (exit {replica.state.exit_codes[-1]})")
                continue
            if outcome == "crashed":
                code = replica.state.exit_codes[-1] if replica.state.exit_codes else None
                replica.schedule_restart()
                self._event(f"{key[0]}/{key[1]}: crashed (exit {code}); restarting (see {replica.log_path})")
            if replica.restart_due():
                replica.restart()
                self._event(f"{key[0]}/{key[1]}: restarted (#{replica.state.restarts})")
        await asyncio.gather(*(t.replica.probe(self._http) for t in self.pods.values() if not t.replica.state.draining))
        for key, tracked in self.pods.items():
            await self._write_pod_status(key, tracked)

    async def _write_pod_status(self, key: tuple[str, str], tracked: TrackedPod) -> None:
        s = tracked.replica.state
        phase = "Running" if s.phase == "Running" and tracked.replica.pid else s.phase
        status = pod_status(phase, s.ready, tracked.replica.placement.host, s.restarts, _iso(s.started_at), "")
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        comparable["ready"] = s.ready
        if comparable == tracked.last_status:
            return
        for c in status["conditions"]:
            c["lastTransitionTime"] = _now()
        try:
            await self._patch_status(core_path(key[0], "pods", key[1]), status)
            tracked.last_status = comparable
        except KubeError as e:
            if e.status != 404:
                raise

    async def _patch_status(self, path: str, status: dict) -> None:
        if self._status_subresource:
            try:
                await self.kube.merge_patch(path + "/status", {"status": status})
                return
            except KubeError as e:
                if e.status not in (404, 405):
                    raise
                if e.status == 404 and await self.kube.get(path) is None:
                    raise
                self._status_subresource = False
        await self.kube.merge_patch(path, {"status": status})

    def _publish_targets(self) -> None:
        if self.on_targets is None:
            return
        self.on_targets([
            ScrapeTarget(address=t.replica.address, namespace=k[0], service=t.labels.get(SERVICE_LABEL, t.deployment_name), pod=k[1])
            for k, t in self.pods.items() if t.replica.pid is not None
        ])

    def _event(self, line: str) -> None:
        log.info(line)
        self.events.append(f"{time.strftime('%H:%M:%S')} {line}")
        del self.events[:-50]

    # -- queries for the service proxy, the view and the tests ---------------------------------------------------------
    def ready_backends(self, namespace: str, selector: dict) -> list[str]:
        return [
            t.replica.address for k, t in self.pods.items()
            if k[0] == namespace and t.replica.state.ready and all(t.labels.get(a) == b for a, b in selector.items())
        ]

    def pids(self, namespace: str | None = None, service: str | None = None) -> list[int]:
        return [
            t.replica.pid for k, t in self.pods.items()
            if t.replica.pid and (namespace is None or k[0] == namespace)
            and (service is None or t.labels.get(SERVICE_LABEL) == service)
        ]

    async def shutdown(self, grace_s: float = 30.0) -> None:
        """Drain every replica, wait for them (SIGKILL after the grace), remove their Pod objects."""
        for key, tracked in self.pods.items():
            tracked.replica.drain(grace_s)
        deadline = time.monotonic() + grace_s + 5
        while self.pods and time.monotonic() < deadline:
            for key, tracked in list(self.pods.items()):
                if tracked.replica.poll() == "exited" or tracked.replica.pid is None:
                    del self.pods[key]
                    try:
                        await self.kube.delete(core_path(key[0], "pods", key[1]))
                    except (KubeError, aiohttp.ClientError, asyncio.TimeoutError, RuntimeError):
                        pass  # the API may already be gone; the processes are what matter here
            await asyncio.sleep(0.2)
        for tracked in self.pods.values():
            tracked.replica.kill()
        self.pods.clear()


def _container_port(spec: dict) -> int:
    for port in engine_container(spec).get("ports") or []:
        if port.get("containerPort"):
            return int(port["containerPort"])
    return DEFAULT_PORT


def _set_container_port(spec: dict, port: int) -> None:
    """Record the port really used (the container's own, unless something else already holds it on that IP)."""
    container = engine_container(spec)
    ports = container.get("ports") or [{"name": "http", "protocol": "TCP"}]
    ports[0] = {**ports[0], "containerPort": port}
    container["ports"] = ports
