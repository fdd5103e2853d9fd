"""The local kubelet against the real API emulator and the real Prometheus, with a stand-in engine process.

Scale up and down through the Deployment, no client request lost while a pod drains, crashed engines restarted,
pods deleted by hand replaced, a deleted Deployment's processes gone, Prometheus scraping each pod with DESIGN's labels.
"""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import psutil
import pytest

from shoal.fleet.fleet import FleetSettings, LocalFleet
from shoal.fleet.kube import apps_path, core_path
from shoal.fleet.loadgen import LoadGenerator
from shoal.fleet.prometheus import query
from shoal.fleet.trace import TraceRequest

STANDIN = Path(__file__).with_name("standin_engine.py")
LABELS = {"app.kubernetes.io/managed-by": "shoal", "shoal.dev/service": "chat"}


def deployment(replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": "default", "labels": LABELS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"shoal.dev/service": "chat"}},
                 "template": {"metadata": {"labels": LABELS}, "spec": {
                     "terminationGracePeriodSeconds": 10,
                     "containers": [{"name": "engine", "image": "shoal", "args": ["--max-num-seqs", "8"],
                                     "ports": [{"containerPort": 8000}]}]}}},
    }


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chat", "namespace": "default", "labels": LABELS},
           "spec": {"selector": {"shoal.dev/service": "chat"}, "ports": [{"name": "http", "port": 8000}]}}


async def until(predicate, timeout_s=30.0, what=""):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(120)
async def test_kubelet_runs_scales_restarts_and_stops_pods(tmp_path):
    settings = FleetSettings(workdir=tmp_path, operator=False, model_dir=tmp_path / "model",
                             serve_prefix=(sys.executable, str(STANDIN)))
    async with LocalFleet(settings) as fleet:
        kube, kubelet = fleet.kube, fleet.kubelet
        await kube.create(apps_path("default", "deployments"), deployment(1))
        await kube.create(core_path("default", "services"), SERVICE)
        ready = lambda: kubelet.ready_backends("default", {"shoal.dev/service": "chat"})  # noqa: E731
        await until(lambda: len(ready()) == 1, what="one ready pod")

        # Pod objects and Deployment status as kubectl shows them.
        pods = json.loads(subprocess.run(["kubectl", "--kubeconfig", str(fleet.kubeconfig), "get", "pods", "-o", "json"],
                                         capture_output=True, text=True, check=True).stdout)["items"]
        assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"
        assert pods[0]["status"]["podIP"].startswith("127.")
        assert pods[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"

        # Scale up: a second process on the other core slot (or sharing, on a 1-core machine).
        await kube.merge_patch(apps_path("default", "deployments", "chat"), {"spec": {"replicas": 2}})
        await until(lambda: len(ready()) == 2, what="two ready pods")
        await until(lambda: _ready_replicas(kube, 2), what="Deployment status readyReplicas=2")
        if fleet.slots.capacity >= 2:
            cores = {t.replica.placement.cores for t in kubelet.pods.values()}
            assert len(cores) == 2  # each replica on its own core

        # Prometheus scrapes both with namespace/service/pod labels.
        async with aiohttp.ClientSession() as http:
            async def scraped():
                series = await query(http, fleet.prometheus.url, 'shoal:runtime_max_num_seqs{namespace="default",service="chat"}')
                return len({s["metric"]["pod"] for s in series}) == 2
            await until(scraped, 20, "Prometheus scraping both pods")

        # Scale down under load: the drained pod finishes its requests, the proxy routes new ones elsewhere.
        url = fleet.proxies[("default", "chat")].url
        load = LoadGenerator(url, "m", [TraceRequest(i * 0.04, 8, 30) for i in range(60)])
        task = asyncio.create_task(load.run())
        await asyncio.sleep(1.0)
        await kube.merge_patch(apps_path("default", "deployments", "chat"), {"spec": {"replicas": 1}})
        records = await task
        assert [r.error for r in records if not r.ok] == []
        assert all(r.output_tokens == 30 for r in records)
        await until(lambda: len(kubelet.pods) == 1, what="the drained pod to go")

        # A crashed engine is restarted, and its restartCount shows it.
        (key, tracked), = kubelet.pods.items()
        old_pid = tracked.replica.pid
        async with aiohttp.ClientSession() as http:
            try:
                await http.post(f"http://{tracked.replica.address}/crash")
            except aiohttp.ClientError:
                pass
        await until(lambda: tracked.replica.state.restarts == 1 and tracked.replica.state.ready, 30, "a restart")
        assert tracked.replica.pid != old_pid and _gone(old_pid)

        # A pod deleted by hand is replaced, its process stopped.
        await kube.delete(core_path("default", "pods", key[1]))
        await until(lambda: key not in kubelet.pods and len(ready()) == 1, 30, "a replacement pod")

        # Deleting the Deployment stops every process it had.
        pids = kubelet.pids("default", "chat")
        assert pids
        await kube.delete(apps_path("default", "deployments", "chat"))
        await until(lambda: not kubelet.pods, 30, "all pods gone")
        assert [p for p in pids if not _gone(p)] == []
        assert (await kube.list(core_path("default", "pods"))) == []


async def _ready_replicas(kube, n):
    dep = await kube.get(apps_path("default", "deployments", "chat"))
    return (dep.get("status") or {}).get("readyReplicas") == n


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
