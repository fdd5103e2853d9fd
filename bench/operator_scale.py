"""Operator at scale: N InferenceServices against the API emulator; time until all converge.

Processes: the emulator (`shoal apiserver`), the operator (`shoal operator`, real kopf), and this script as the
client that creates the services and watches for convergence (all children exist, status written for the
current generation). Reported: converge time, reconcile p50/p99 (from the operator's own histogram, interpolated
as PromQL's histogram_quantile does), operator peak RSS (VmHWM), CPU seconds of each process (the emulator's
share among them), and the emulator alone: writes/s once 5,000 objects exist.

    .venv/bin/python bench/operator_scale.py --n 1000 --out bench/results/operator_scale.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import aiohttp
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from shoal.fleet.apiserver.process import start_apiserver  # noqa: E402

NS = "bench"
ISVC = f"/apis/shoal.dev/v1alpha1/namespaces/{NS}/inferenceservices"
CHILD_LISTS = {"Deployment": f"/apis/apps/v1/namespaces/{NS}/deployments",
               "Service": f"/api/v1/namespaces/{NS}/services",
               "ConfigMap": f"/api/v1/namespaces/{NS}/configmaps",
               "Secret": f"/api/v1/namespaces/{NS}/secrets",
               "PodDisruptionBudget": f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """PromQL's histogram_quantile over cumulative (upper bound, count) buckets: linear within a bucket."""
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1e-12)
        lower_bound, lower_count = bound, count
    return lower_bound


async def reconcile_histogram(session: aiohttp.ClientSession, metrics_url: str) -> list[tuple[float, float]]:
    async with session.get(metrics_url) as resp:
        text = await resp.text()
    buckets = []
    for line in text.splitlines():
        if line.startswith("shoal_operator_reconcile_duration_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.split()[-1])))
    return sorted(buckets)


def isvc(name: str) -> dict:
    return {"apiVersion": "shoal.dev/v1alpha1", "kind": "InferenceService", "metadata": {"name": name},
            # distinct model URIs, so the emulator's cached CEL verdicts cannot all be reused
            "spec": {"model": {"name": name, "uri": f"pvc://models/{name}"}, "resources": {"gpus": 0, "cpu": "1"}}}


async def create_all(session: aiohttp.ClientSession, url: str, names: list[str], concurrency: int = 32) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(name: str) -> None:
        async with semaphore:
            async with session.post(url + ISVC, json=isvc(name)) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"create {name}: {resp.status} {await resp.text()}")

    await asyncio.gather(*(one(n) for n in names))


async def converged(session: aiohttp.ClientSession, url: str, n: int) -> bool:
    async with session.get(url + ISVC) as resp:
        items = (await resp.json())["items"]
    done = sum(1 for o in items if (o.get("status") or {}).get("observedGeneration") == o["metadata"]["generation"]
               and (o.get("status") or {}).get("conditions"))
    if done < n:
        return False
    for path in CHILD_LISTS.values():  # status comes after the children in a reconcile; check anyway
        async with session.get(url + path) as resp:
            if len((await resp.json())["items"]) < n:
                return False
    return True


async def watch_until_converged(session: aiohttp.ClientSession, url: str, names: set[str], since: str,
                                started: asyncio.Event) -> None:
    """Follow a watch (cheap for the emulator, unlike polling lists) until every service has its status."""
    pending = set(names)
    params = {"watch": "true", "resourceVersion": since}
    async with session.get(url + ISVC, params=params, timeout=aiohttp.ClientTimeout(total=None)) as resp:
        started.set()
        async for line in resp.content:
            obj = json.loads(line)["object"]
            status = obj.get("status") or {}
            if status.get("observedGeneration") == obj["metadata"]["generation"] and status.get("conditions"):
                pending.discard(obj["metadata"]["name"])
                if not pending:
                    return


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found")


async def emulator_write_rate(objects: int = 5000, measured: int = 500) -> dict:
    """The emulator alone, in-process: configmap creates per second after `objects` exist."""
    from shoal.fleet.apiserver import serve

    async with serve() as running, aiohttp.ClientSession() as session:
        url = running.url + "/api/v1/namespaces/default/configmaps"

        async def create(i: int) -> None:
            async with session.post(url, json={"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}}) as resp:
                assert resp.status == 201

        async def batch(lo: int, hi: int) -> float:
            began = time.perf_counter()
            for start in range(lo, hi, 50):
                await asyncio.gather(*(create(i) for i in range(start, min(hi, start + 50))))
            return (hi - lo) / (time.perf_counter() - began)

        first = await batch(0, measured)
        await batch(measured, objects)
        late = await batch(objects, objects + measured)
    return {"writes_per_s_first_500": round(first), "writes_per_s_at_5000": round(late)}


async def run(n: int, workdir: Path, workers: int) -> dict:
    api_profile = ("-m", "cProfile", "-o", os.environ["SHOAL_PROFILE_APISERVER"]) if os.environ.get(
        "SHOAL_PROFILE_APISERVER") else ()
    api = start_apiserver(workdir, manifests=(REPO / "crds" / "inferenceservice.yaml",), interpreter_args=api_profile)
    metrics_port = free_port()
    env = dict(os.environ, KUBECONFIG=str(api.kubeconfig))
    profile = ["-m", "cProfile", "-o", os.environ["SHOAL_PROFILE_OPERATOR"]] if os.environ.get(
        "SHOAL_PROFILE_OPERATOR") else []  # for finding where the operator's time goes
    operator = subprocess.Popen(
        [sys.executable, *profile, "-m", "shoal", "operator", "--all-namespaces", "--standalone", "--liveness-port", "0",
         "--metrics-port", str(metrics_port), "--engine-image", "bench/engine:0", "--workers", str(workers)],
        env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "operator.log", "w"))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(api.url + "/api/v1/namespaces", json={"metadata": {"name": NS}}) as resp:
                assert resp.status == 201
            # objects only after kopf's watch is open: one warm-up service must converge first
            await create_all(session, api.url, ["warmup"])
            deadline = time.monotonic() + 60
            while not await converged(session, api.url, 1):
                if operator.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"operator not working; see {workdir / 'operator.log'}")
                await asyncio.sleep(0.2)
            api_ps, op_ps, me = psutil.Process(api.process.pid), psutil.Process(operator.pid), psutil.Process()
            cpu0 = {"emulator": cpu_seconds(api_ps), "operator": cpu_seconds(op_ps), "client": cpu_seconds(me)}
            before = await reconcile_histogram(session, f"http://127.0.0.1:{metrics_port}/metrics")
            names = [f"svc-{i:05d}" for i in range(n)]
            async with session.get(api.url + ISVC) as resp:
                since = (await resp.json())["metadata"]["resourceVersion"]
            watching = asyncio.Event()
            watcher = asyncio.create_task(watch_until_converged(session, api.url, set(names), since, watching))
            await watching.wait()
            started = time.perf_counter()
            await create_all(session, api.url, names)
            created_s = time.perf_counter() - started
            await asyncio.wait_for(watcher, timeout=600)
            while not await converged(session, api.url, n + 1):  # children too (status comes after them)
                await asyncio.sleep(0.25)
            converge_s = time.perf_counter() - started
            cpu = {k: round(v - cpu0[k], 2) for k, v in
                   {"emulator": cpu_seconds(api_ps), "operator": cpu_seconds(op_ps), "client": cpu_seconds(me)}.items()}
            after = await reconcile_histogram(session, f"http://127.0.0.1:{metrics_port}/metrics")
            rss = peak_rss_mb(operator.pid)
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        api.stop()
    delta = [(bound, count - dict(before).get(bound, 0.0)) for bound, count in after]
    return {
        "n": n,
        "workers": workers,
        "converge_s": round(converge_s, 2),
        "create_s": round(created_s, 2),
        "reconciles": int(delta[-1][1]),
        "reconcile_p50_ms": round(histogram_quantile(0.50, delta) * 1000, 2),
        "reconcile_p99_ms": round(histogram_quantile(0.99, delta) * 1000, 2),
        "peak_rss_mb": round(rss, 1),
        "cpu_seconds": cpu,
        "emulator_cpu_share": round(cpu["emulator"] / max(sum(cpu.values()), 1e-9), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=1, help="the operator's concurrent reconciles (its default)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="shoal-opscale-") as tmp:
        result = asyncio.run(run(args.n, Path(tmp), args.workers))
    # the machine is shared: its 1-minute load average says how much CPU this run could have had
    result["load_average_1m"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    result["emulator_alone"] = asyncio.run(emulator_write_rate())
    result["machine"] = {"cpus": psutil.cpu_count(), "cpu": platform.processor() or platform.machine(),
                         "python": platform.python_version(), "kopf": version("kopf"), "kmock": version("kmock"),
                         "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
