"""Scale-down under load on the local fleet: real `shoal serve` pods (SmolLM2, CPU) behind the fleet's service proxy,
clients streaming through it while the Deployment goes from 2 replicas to 1.

What must hold: the removed pod leaves the Service's endpoints before it is told to stop, so no new request reaches it
(the proxy never has to retry one away from it), its in-flight streams finish, and no client request fails. The local
kubelet marks the pod unready (the proxy reads readiness from it, so the endpoint goes at once) and then sends SIGTERM;
a cluster needs the operator's preStop sleep for the same order, which the local kubelet does not run.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from pathlib import Path

import aiohttp
import engine_faults_harness as h

LABELS = {"app.kubernetes.io/managed-by": "shoal", "shoal.dev/service": "chat"}
SELECTOR = {"shoal.dev/service": "chat"}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chat", "namespace": "default", "labels": LABELS},
           "spec": {"selector": SELECTOR, "ports": [{"name": "http", "port": 8000}]}}


def deployment(replicas: int, max_num_seqs: int) -> dict:
    container = {"name": "engine", "image": "shoal", "ports": [{"containerPort": 8000}],
                 "args": ["serve", "--max-num-seqs", str(max_num_seqs), "--drain-timeout", "120",
                          "--served-model-name", h.MODEL]}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": "default", "labels": LABELS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": SELECTOR},
                 "template": {"metadata": {"labels": LABELS}, "spec": {
                     "terminationGracePeriodSeconds": 180, "containers": [container]}}},
    }


async def _until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


async def fleet_scale_down_campaign(streams: int = 16, max_tokens: int = 24, workdir: Path | None = None) -> dict:
    """Row: `streams` clients streaming through the service proxy in a loop; scale 2 -> 1 while they run."""
    from shoal.fleet.fleet import FleetSettings, LocalFleet
    from shoal.fleet.kube import apps_path, core_path

    workdir = workdir or Path(tempfile.mkdtemp(prefix="shoal-drain-"))
    settings = FleetSettings(workdir=workdir, operator=False, model_dir=h.model_dir(), cores_per_replica=1)
    async with LocalFleet(settings) as fleet:
        kube, kubelet = fleet.kube, fleet.kubelet
        await kube.create(apps_path("default", "deployments"), deployment(2, streams))
        await kube.create(core_path("default", "services"), SERVICE)
        await _until(lambda: len(kubelet.ready_backends("default", SELECTOR)) == 2, 300, "two ready pods")
        url = await fleet.service_url("default", "chat")
        proxy = fleet.proxies[("default", "chat")]
        stop = asyncio.Event()
        results: list[h.StreamResult] = []

        async def client(c: int, http: aiohttp.ClientSession) -> None:
            i = 0
            while not stop.is_set():
                body = h.completion_body(f"Client {c} asks question {i}: why is the sky blue?", max_tokens)
                results.append(await h.stream_completion(http, url, body))
                i += 1

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
            clients = [asyncio.create_task(client(c, http)) for c in range(streams)]
            await _until(lambda: sum(r.ok for r in results) >= streams, 300, "a round of requests on both pods")
            retries_before, done_before = proxy.retries, len(results)
            await kube.merge_patch(apps_path("default", "deployments", "chat"), {"spec": {"replicas": 1}})
            key, tracked = await _until(lambda: next(((k, t) for k, t in kubelet.pods.items()
                                                     if t.replica.state.draining), None), 30, "a draining pod")
            drained_address, log_path = tracked.replica.address, tracked.replica.log_path
            endpoint_removed_at_drain = drained_address not in kubelet.ready_backends("default", SELECTOR)
            t0 = time.monotonic()
            await _until(lambda: key not in kubelet.pods, 300, "the drained pod to exit")
            drain_s = time.monotonic() - t0
            n_at_exit = len(results)
            await _until(lambda: len(results) >= n_at_exit + streams, 300, "a round on the remaining pod")
            stop.set()
            await asyncio.gather(*clients)
        retries = proxy.retries - retries_before
        log = log_path.read_text(errors="replace")
    failed = [r for r in results if not (r.ok and r.completion_tokens == max_tokens)]
    match = re.search(r"draining: (\d+) requests in flight", log)
    in_flight = int(match.group(1)) if match else 0
    crashes = len(h.crash_lines(log))
    return {
        "scenario": f"scale-down 2->1 with {streams} clients streaming through the service proxy",
        "faults_injected": in_flight, "survived": in_flight if not failed else 0,
        "data_lost": len(failed) + crashes,
        "in_flight_on_removed_pod": in_flight, "requests_total": len(results),
        "requests_after_scale_down": len(results) - done_before, "failed_requests": len(failed),
        "endpoint_removed_before_sigterm": endpoint_removed_at_drain,
        "requests_routed_to_draining_pod": retries, "drain_seconds": round(drain_s, 1),
        "crash_lines": crashes, "failures": [r.error for r in failed][:5],
    }
