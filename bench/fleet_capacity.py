"""What one more local replica adds: output tokens/s through the Service at 1 and at 2 pinned replicas, same run.

The local fleet pins each replica to its own core slot so that scaling up adds real capacity (src/shoal/fleet/cores.py).
This measures it: the operator runs examples/local-cpu.yaml with autoscaling off at spec.replicas = 1, then 2, and a
closed loop of C clients (random-token prompts, forced output length) saturates the Service for T seconds each.
Writes bench/results/fleet_capacity.json.

    .venv/bin/python bench/fleet_capacity.py --seconds 40 --clients 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import aiohttp
import yaml

from shoal.fleet.fleet import REPO_ROOT, FleetSettings, LocalFleet
from shoal.fleet.kube import group_path
from shoal.fleet.loadgen import LoadGenerator, percentile

OUT = REPO_ROOT / "bench" / "results" / "fleet_capacity.json"


async def closed_loop(base_url: str, model: str, clients: int, seconds: float, prompt: int, output: int) -> dict:
    load = LoadGenerator(base_url, model, [], seed=1)
    load.started_at = time.monotonic()
    deadline = load.started_at + seconds

    async def client(session):
        while time.monotonic() < deadline:
            await load.send(session, prompt, output)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    elapsed = load.elapsed()
    ok = [r for r in load.records if r.ok]
    gaps = [g for r in ok for g in r.token_gaps]
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    return {
        "requests": len(ok),
        "failed": len(load.records) - len(ok),
        "output_tokens_per_s": round(sum(r.output_tokens for r in ok) / elapsed, 1),
        "itl_p50_ms": round(1000 * (percentile(gaps, 50) or 0), 1),
        "itl_p95_ms": round(1000 * (percentile(gaps, 95) or 0), 1),
        "ttft_p95_ms": round(1000 * (percentile(ttfts, 95) or 0), 1),
        "seconds": round(elapsed, 1),
    }


async def wait_ready(fleet: LocalFleet, ns: str, name: str, n: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while len(fleet.kubelet.ready_backends(ns, {"shoal.dev/service": name})) != n or \
            len([k for k in fleet.kubelet.pods if k[0] == ns]) != n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} ready replicas not reached in {timeout_s} s")
        await asyncio.sleep(0.5)


async def main(args: argparse.Namespace) -> dict:
    svc = yaml.safe_load((REPO_ROOT / "examples" / "local-cpu.yaml").read_text())
    svc["spec"]["autoscaling"] = {"enabled": False}
    svc["spec"]["batchTuning"] = {"enabled": False}
    svc["spec"]["replicas"] = 1
    ns, name, model = svc["metadata"]["namespace"], svc["metadata"]["name"], svc["spec"]["model"]["name"]
    results = {}
    async with LocalFleet(FleetSettings(cores_per_replica=args.cores_per_replica)) as fleet:
        path = group_path("shoal.dev/v1alpha1", ns, "inferenceservices")
        await fleet.kube.create(path, svc)
        url = await fleet.service_url(ns, name)
        for replicas in range(1, min(args.max_replicas, fleet.slots.capacity) + 1):
            await fleet.kube.merge_patch(f"{path}/{name}", {"spec": {"replicas": replicas}})
            await wait_ready(fleet, ns, name, replicas)
            await closed_loop(url, model, args.clients, 5, args.prompt, args.output)  # warm-up
            results[replicas] = await closed_loop(url, model, args.clients, args.seconds, args.prompt, args.output)
            results[replicas]["load_average_1m_after"] = round(os.getloadavg()[0], 2)
            print(f"replicas={replicas}: {results[replicas]}", flush=True)
        slots = [list(s) for s in fleet.slots.slots]
    import torch

    return {
        "workload": {"clients": args.clients, "prompt_tokens": args.prompt, "output_tokens": args.output,
                     "seconds": args.seconds, "model": model},
        "replica_slots": slots,
        "torch": torch.__version__,
        "by_replicas": results,
        "scaling": round(results[max(results)]["output_tokens_per_s"] / results[1]["output_tokens_per_s"], 2)
        if len(results) > 1 else None,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--output", type=int, default=32)
    parser.add_argument("--max-replicas", type=int, default=2)
    parser.add_argument("--cores-per-replica", type=int, default=1)
    result = asyncio.run(main(parser.parse_args()))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
