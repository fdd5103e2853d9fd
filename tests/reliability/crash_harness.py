"""Operator crashes (issue 9): SIGKILL the real operator right after its k-th write, restart it, check the result.

One reconcile of a new autoscaled InferenceService is enumerated write by write (the emulator's tripwire counts the
operator's accepted writes: six children, status, then the autoscaler's status, Deployment scale and ConfigMap).
For each k a fresh namespace gets the same service; the operator dies right after write k, before its answer; a new
operator process takes over. Converged means: the children are exactly the desired ones (no duplicate, no orphan),
and the autoscaler's state in status carried over (no decision undone, no learned state reset).
A real Prometheus scrapes a stand-in engine whose latency breaks the SLO, so the autoscaler scales and tunes.
"""

from __future__ import annotations

import base64
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from api_faults_harness import (
    CRD, REPO, SERVICEMONITOR_CRD, Api, OperatorProcess, Verdict, create_namespaces, verdict, wait_for,
)

sys.path.insert(0, str(REPO / "tests" / "autoscale"))  # the stand-in engine and the real Prometheus runner
from promserver import running_prometheus  # noqa: E402
from standin import StandinEngine  # noqa: E402

NAME = "chat"
STANDIN_TTFT_S, STANDIN_ITL_S = 0.2, 0.045  # ITL at 90% of its 50 ms SLO, TTFT fine: scale up and cut the budget


def crash_isvc() -> dict:
    return {"apiVersion": "shoal.dev/v1alpha1", "kind": "InferenceService", "metadata": {"name": NAME},
            "spec": {"model": {"name": "m", "uri": "pvc://models/m"}, "resources": {"gpus": 0},
                     "slo": {"ttftP95Ms": 500, "itlP95Ms": 50}, "batchTuning": {"enabled": True},
                     "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 3}}}


def ns_path(ns: str, kind: str, name: str = "") -> str:
    base = {"isvc": f"/apis/shoal.dev/v1alpha1/namespaces/{ns}/inferenceservices",
            "deployment": f"/apis/apps/v1/namespaces/{ns}/deployments",
            "configmap": f"/api/v1/namespaces/{ns}/configmaps", "secret": f"/api/v1/namespaces/{ns}/secrets",
            "pod": f"/api/v1/namespaces/{ns}/pods"}[kind]
    return f"{base}/{name}" if name else base


class Kubelet:
    """What the kubelet and the Deployment controller would write for the active namespace: one ready pod at the
    stand-in's address, the Deployment's status; and the admin token handed to the stand-in."""

    def __init__(self, api: Api, engine: StandinEngine):
        self.api, self.engine, self.namespace = api, engine, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            ns = self.namespace
            if ns is not None:
                self._tend(ns)

    def _tend(self, ns: str) -> None:
        deployment = self.api.get(ns_path(ns, "deployment", NAME))
        if deployment is None:
            return
        if self.api.get(ns_path(ns, "pod", f"{NAME}-0")) is None:
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": f"{NAME}-0", "labels": {"shoal.dev/service": NAME}},
                   "spec": {"containers": [{"name": "engine", "image": "x",
                                            "ports": [{"name": "http", "containerPort": self.engine.port}]}]}}
            self.api.call("POST", ns_path(ns, "pod"), pod, "application/json")
            self.api.call("PATCH", ns_path(ns, "pod", f"{NAME}-0") + "/status", {"status": {
                "phase": "Running", "podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}})
        want = {"replicas": deployment["spec"].get("replicas", 1), "readyReplicas": 1, "updatedReplicas": 1,
                "observedGeneration": deployment["metadata"]["generation"]}  # one pod serves; the rest "start"
        if any((deployment.get("status") or {}).get(k) != v for k, v in want.items()):
            self.api.call("PATCH", ns_path(ns, "deployment", NAME) + "/status", {"status": want})
        secret = self.api.get(ns_path(ns, "secret", f"{NAME}-admin-token"))
        if secret and (secret.get("data") or {}).get("token"):
            self.engine.token = base64.b64decode(secret["data"]["token"]).decode()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Bench:
    """The emulator, Prometheus, the stand-in engine and the kubelet, shared by every crash point."""

    workdir: Path
    api: Api
    url: str
    prometheus_url: str
    kubelet: Kubelet

    def operator(self, token: str, namespace: str, prewarmed: bool = False) -> OperatorProcess:
        return OperatorProcess(self.workdir, self.url, token, self.prometheus_url, namespace=namespace,
                               prewarmed=prewarmed)

    def arm(self, token: str, pid: int | None = None, after: int | None = None) -> dict:
        status, body = self.api.call("PUT", "/debug/tripwire", {"token": token, "pid": pid, "after": after},
                                     "application/json")
        assert status == 200, body
        return body


@contextmanager
def crash_bench(workdir: Path, points: int) -> Iterator[Bench]:
    """Everything but the operator; Prometheus scrapes the stand-in once per namespace crash-0..crash-`points`."""
    from shoal.fleet.apiserver.process import start_apiserver

    with ExitStack() as stack:
        engine = StandinEngine(token=None, ttft_s=STANDIN_TTFT_S, itl_s=STANDIN_ITL_S)
        stack.callback(engine.close)
        targets = [(f"127.0.0.1:{engine.port}", {"namespace": f"crash-{k}", "service": NAME, "pod": f"{NAME}-0"})
                   for k in range(points + 1)]
        prometheus_url = stack.enter_context(running_prometheus(workdir, targets))
        emulator = stack.enter_context(start_apiserver(workdir, manifests=(CRD,)))
        api = Api(emulator.url)
        api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", SERVICEMONITOR_CRD)
        kubelet = Kubelet(api, engine)
        stack.callback(kubelet.close)
        yield Bench(workdir, api, emulator.url, prometheus_url, kubelet)


def settled(api: Api, ns: str) -> dict | None:
    """The service once the first control tick has scaled it up and tuned it (the end of one full reconcile)."""
    isvc = api.get(ns_path(ns, "isvc", NAME))
    deployment = api.get(ns_path(ns, "deployment", NAME))
    status = (isvc or {}).get("status") or {}
    if not deployment or deployment["spec"].get("replicas", 1) < 2 or (status.get("batch") or {}).get("tunedAt") is None:
        return None
    configmap = api.get(ns_path(ns, "configmap", f"{NAME}-runtime")) or {}
    return isvc if configmap.get("data", {}).get("maxNumBatchedTokens") == str(status["batch"]["maxNumBatchedTokens"]) \
        else None


def enumerate_writes(bench: Bench, timeout: float = 60.0) -> list[str]:
    """A crash-free run in namespace crash-0: the operator's accepted writes, in order, up to the first tick that
    scaled and tuned (its ConfigMap write)."""
    ns = "crash-0"
    create_namespaces(bench.api, (ns,))
    bench.kubelet.namespace = ns
    operator = bench.operator("count", ns)
    bench.arm("count")
    try:
        bench.api.create(ns_path(ns, "isvc"), crash_isvc())
        wait_for(lambda: settled(bench.api, ns), timeout, "the first scale-up and tune")
        writes = bench.api.get("/debug/tripwire")["writes"]
    finally:
        operator.stop()
    last_configmap = max(i for i, w in enumerate(writes) if w.startswith("PATCH") and "/configmaps/" in w)
    return writes[:last_configmap + 1]


@dataclass
class CrashResult:
    point: int
    write: str  # the write right after which the operator died
    verdict: Verdict
    state_lost: list[str] = field(default_factory=list)  # autoscaler state the restart undid
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verdict.clean and not self.state_lost


def autoscaler_losses(before: dict, after: dict, deployment: dict, configmap: dict) -> list[str]:
    """What of the autoscaler's state at the crash the restarted operator lost or undid (pure)."""
    lost = []
    pre, post = before.get("autoscaling") or {}, after.get("autoscaling") or {}
    pre_planner, post_planner = pre.get("planner") or {}, post.get("planner") or {}
    if pre_planner and not post_planner:
        lost.append("status.autoscaling.planner vanished")
    if pre_planner.get("capacityRps") is not None and post_planner.get("capacityRps") is None:
        lost.append("the learned capacity was reset")
    # the stabilization window (300 s) outlives these runs: a resumed planner still holds every earlier forecast
    forgotten = {tuple(r) for r in pre_planner.get("recentForecasts") or ()} - {
        tuple(r) for r in post_planner.get("recentForecasts") or ()}
    if forgotten:
        lost.append(f"{len(forgotten)} forecasts of the stabilization window forgotten")
    if pre.get("lastScaleTime") and (post.get("lastScaleTime") or "") < pre["lastScaleTime"]:
        lost.append(f"lastScaleTime went back: {pre['lastScaleTime']} -> {post.get('lastScaleTime')}")
    if (after.get("desiredReplicas") or 0) < (before.get("desiredReplicas") or 0):  # the breach goes on
        lost.append(f"desiredReplicas fell {before.get('desiredReplicas')} -> {after.get('desiredReplicas')}")
    if deployment["spec"].get("replicas") != after.get("desiredReplicas"):
        lost.append(f"Deployment replicas {deployment['spec'].get('replicas')} != desired {after.get('desiredReplicas')}")
    pre_batch, post_batch = before.get("batch") or {}, after.get("batch") or {}
    if pre_batch.get("tunedAt") is not None and (post_batch.get("tunedAt") or 0) < pre_batch["tunedAt"]:
        lost.append("the batch tuner's state was reset")
    if post_batch.get("tunedAt") is not None and configmap.get("data", {}).get("maxNumBatchedTokens") != str(
            post_batch.get("maxNumBatchedTokens")):
        lost.append(f"ConfigMap {configmap.get('data')} != status.batch {post_batch}")
    return lost


def crash_at(bench: Bench, k: int, timeout: float = 60.0) -> CrashResult:
    """Kill the operator right after its k-th write in namespace crash-k, restart it, wait for convergence."""
    started = time.monotonic()
    ns = f"crash-{k}"
    create_namespaces(bench.api, (ns,))
    bench.kubelet.namespace = ns
    first = bench.operator(f"a{k}", ns)
    second = bench.operator(f"b{k}", ns, prewarmed=True)  # imports while the first one works
    bench.arm(f"a{k}", first.pid, k)
    bench.api.create(ns_path(ns, "isvc"), crash_isvc())
    try:
        first.process.wait(timeout)
    except Exception:
        first.stop()
        second.stop()
        raise AssertionError(f"crash point {k}: the operator never made {k} writes:\n{first.tail()}")
    report = bench.api.get("/debug/tripwire")
    assert report["killed"] and first.process.returncode == -9, report
    write = report["writes"][-1]  # the k-th write of this run (concurrent writes may come in another order)
    before = (bench.api.get(ns_path(ns, "isvc", NAME)) or {}).get("status") or {}
    second.go()
    try:
        # converged, and at least one control tick of the new operator has decided from the state it found
        def done():
            isvc = bench.api.get(ns_path(ns, "isvc", NAME))
            after = (isvc or {}).get("status") or {}
            last = ((after.get("autoscaling") or {}).get("planner") or {}).get("lastTime")
            pre_last = ((before.get("autoscaling") or {}).get("planner") or {}).get("lastTime")
            return last is not None and (pre_last is None or last > pre_last) and verdict(bench.api, True, ns).clean
        wait_for(done, timeout, f"convergence after a crash at write {k}", interval=0.2)
        time.sleep(1.0)  # one more control period: what it settled on holds
        result = verdict(bench.api, True, ns)
        after = bench.api.get(ns_path(ns, "isvc", NAME))["status"]
        deployment = bench.api.get(ns_path(ns, "deployment", NAME))
        configmap = bench.api.get(ns_path(ns, "configmap", f"{NAME}-runtime"))
        lost = autoscaler_losses(before, after, deployment, configmap)
    except AssertionError:
        result, lost = verdict(bench.api, True, ns), ["did not converge"]
    finally:
        second.stop()
    return CrashResult(k, write, result, lost, time.monotonic() - started)
