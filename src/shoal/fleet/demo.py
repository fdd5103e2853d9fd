"""`shoal demo`: the whole loop on this machine, watched live, ending in a report and a plot.

Starts the local fleet, applies an example InferenceService (maxReplicas capped at what this machine can add),
waits for its first pod, replays the Azure conversation trace against the Service (time-compressed, token counts
scaled down), samples what the operator and the engines do every second, and writes `report.md`, `demo.png` and
`samples.json`. Ctrl-C ends the load early; the report is still written and everything started is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import json
import platform
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import yaml

from shoal.fleet import trace as trace_mod
from shoal.fleet.cores import capacity_note
from shoal.fleet.fleet import REPO_ROOT, FleetSettings, LocalFleet
from shoal.fleet.kube import KubeError, apps_path, group_path
from shoal.fleet.loadgen import LoadGenerator, window_stats
from shoal.fleet.prometheus import query
from shoal.fleet.report import RunInfo, Sample, build_markdown, plot, samples_as_dicts
from shoal.fleet.view import render

ISVC = "shoal.dev/v1alpha1"


@dataclass(frozen=True)
class DemoSettings:
    example: Path = REPO_ROOT / "examples" / "local-cpu.yaml"
    out_dir: Path = Path("shoal-demo")
    duration_s: float = 240.0
    cooldown_s: float = 75.0
    replay: trace_mod.ReplayConfig = trace_mod.ReplayConfig()
    trace: Path | None = None
    cores_per_replica: int = 1
    scale_down_stabilization_s: int | None = None
    window_s: float = 15.0
    live: bool = True
    command: str = "shoal demo"
    operator_args: tuple[str, ...] = ()
    ready_timeout_s: float = 240.0
    keep_logs: bool = False
    operator_period_s: float = 5.0  # the control loop's period (the operator's default is 15 s)
    cooldown_rps: float = 0.1  # after the trace: a trickle, so latency series stay alive (no data means hold)


def load_service(example: Path, max_replicas_cap: int, stabilization_s: int | None) -> tuple[dict, list[str]]:
    """The example InferenceService, with maxReplicas capped at this machine's slots; notes say what changed."""
    docs = [d for d in yaml.safe_load_all(example.read_text()) if d]
    services = [d for d in docs if d.get("kind") == "InferenceService"]
    if len(services) != 1:
        raise ValueError(f"{example}: expected exactly one InferenceService, found {len(services)}")
    svc = services[0]
    svc.setdefault("metadata", {}).setdefault("namespace", "default")
    notes: list[str] = []
    autoscaling = svc.setdefault("spec", {}).setdefault("autoscaling", {})
    asked = int(autoscaling.get("maxReplicas", 1))
    if asked > max_replicas_cap:
        autoscaling["maxReplicas"] = max_replicas_cap
        notes.append(f"maxReplicas lowered from {asked} to {max_replicas_cap} (this machine's core slots)")
    if int(autoscaling.get("minReplicas", 1)) > autoscaling.get("maxReplicas", asked):
        autoscaling["minReplicas"] = autoscaling["maxReplicas"]
    if stabilization_s is not None:
        autoscaling["scaleDownStabilizationSeconds"] = stabilization_s
        notes.append(f"scaleDownStabilizationSeconds set to {stabilization_s}")
    return svc, notes


async def apply(fleet: LocalFleet, svc: dict) -> None:
    ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
    path = group_path(ISVC, ns, "inferenceservices")
    existing = await fleet.kube.get(f"{path}/{name}")
    if existing is None:
        await fleet.kube.create(path, svc)
    else:
        await fleet.kube.merge_patch(f"{path}/{name}", {"spec": svc["spec"]})


async def take_sample(fleet: LocalFleet, http: aiohttp.ClientSession, ns: str, name: str,
                      load: LoadGenerator | None, window_s: float) -> Sample:
    isvc = await fleet.kube.get(group_path(ISVC, ns, "inferenceservices", name)) or {}
    dep = await fleet.kube.get(apps_path(ns, "deployments", name)) or {}
    status = isvc.get("status") or {}
    batch = status.get("batch") or {}
    decision = ((status.get("autoscaling") or {}).get("lastDecision") or {})
    engines: list[int] = []
    if fleet.prometheus is not None:
        try:
            series = await query(http, fleet.prometheus.url, f'shoal:runtime_max_num_seqs{{namespace="{ns}",service="{name}"}}')
            engines = sorted(int(float(s["value"][1])) for s in series)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError):
            engines = []
    stats = window_stats(load.records, load.elapsed(), window_s) if load and load.started_at else {}
    return Sample(
        t=load.elapsed() if load and load.started_at else 0.0,
        sent_rps=stats.get("sent_rps", 0.0),
        done_rps=stats.get("done_rps", 0.0),
        ttft_p95_ms=stats.get("ttft_p95_ms"),
        itl_p95_ms=stats.get("itl_p95_ms"),
        replicas_desired=(dep.get("spec") or {}).get("replicas"),
        replicas_ready=(dep.get("status") or {}).get("readyReplicas", 0) if dep else None,
        max_num_seqs=batch.get("maxNumSeqs"),
        engine_max_num_seqs=engines,
        max_num_batched_tokens=batch.get("maxNumBatchedTokens"),
        decision=str(decision.get("reason") or ""),
        tune_reason=str(batch.get("reason") or ""),
        in_flight=stats.get("in_flight", 0),
    )


def cooldown_trickle(settings: DemoSettings) -> list[trace_mod.TraceRequest]:
    n = int(settings.cooldown_s * settings.cooldown_rps)
    start = settings.duration_s
    return [trace_mod.TraceRequest(start + (i + 0.5) / settings.cooldown_rps, 16, 8) for i in range(n)]


def pod_rows(fleet: LocalFleet) -> list[tuple[str, str, str]]:
    rows = []
    for (ns, name), t in sorted((fleet.kubelet.pods if fleet.kubelet else {}).items()):
        s = t.replica.state
        state = "draining" if s.draining else ("Ready" if s.ready else ("starting" if t.replica.pid else "back-off"))
        state += f", cores {list(t.replica.placement.cores)}" + (f", restarts {s.restarts}" if s.restarts else "")
        rows.append((name, t.replica.address, state))
    return rows


async def run_demo(settings: DemoSettings) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    trace_path = settings.trace or trace_mod.find_trace()
    rows = trace_mod.read_trace(trace_path)
    requests = trace_mod.compress(rows, settings.replay)
    trace_note = trace_mod.describe(rows, requests, settings.replay)
    requests = requests + cooldown_trickle(settings)
    trace_note += (f"; then {settings.cooldown_s:.0f} s of a trickle, one short request every "
                   f"{1 / settings.cooldown_rps:.0f} s, so the operator keeps seeing latency while it scales down")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    fleet = LocalFleet(FleetSettings(
        cores_per_replica=settings.cores_per_replica, operator_args=settings.operator_args,
        operator_env={"SHOAL_AUTOSCALER_PERIOD_SECONDS": f"{settings.operator_period_s:g}"},
        keep_workdir=settings.keep_logs))
    svc, notes = load_service(settings.example, fleet.slots.capacity, settings.scale_down_stabilization_s)
    ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
    slo = svc["spec"].get("slo") or {}
    slo_ttft, slo_itl = float(slo.get("ttftP95Ms", 500)), float(slo.get("itlP95Ms", 50))
    max_replicas = svc["spec"]["autoscaling"]["maxReplicas"]
    cap_note = capacity_note(fleet.slots, settings.cores_per_replica, max_replicas)
    console.print(f"[bold]Shoal demo[/bold]: {cap_note}.")
    for note in notes:
        console.print(f"  {note}")
    console.print(f"  load: {trace_note}")
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    samples: list[Sample] = []
    loads: list[float] = []  # the machine's load average: other work on these cores shows in every latency
    load: LoadGenerator | None = None
    console.print("starting the API emulator, Prometheus, the operator and the kubelet ...")
    async with fleet:
        hints = [
            f"kubeconfig: {fleet.kubeconfig}",
            f"  try: KUBECONFIG={fleet.kubeconfig} kubectl get shoal -A ; kubectl describe shoal {name} ; kubectl get pods",
            f"Prometheus: {fleet.prometheus.url}    logs: {fleet.workdir}"
            f"{'' if settings.keep_logs else ' (removed at the end; --keep-logs keeps them)'}    Ctrl-C stops everything",
        ]
        console.print("\n".join(hints))
        await apply(fleet, svc)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            with (Live(console=console, refresh_per_second=2) if settings.live else contextlib.nullcontext()) as live:
                def show(title: str, sample: Sample | None, elapsed: float, total: float) -> None:
                    view = render(sample, title=title, elapsed_s=elapsed, duration_s=total, slo_ttft_ms=slo_ttft,
                                  slo_itl_ms=slo_itl, max_replicas=max_replicas, pods=pod_rows(fleet),
                                  events=fleet.kubelet.events if fleet.kubelet else [], hints=hints)
                    if live is not None:
                        live.update(view)

                # 1. wait for the first ready pod behind the Service
                t0 = time.monotonic()
                base_url = None
                while not stop.is_set():
                    elapsed = time.monotonic() - t0
                    if (ns, name) in fleet.proxies and fleet.kubelet and fleet.kubelet.ready_backends(ns, {"shoal.dev/service": name}):
                        base_url = fleet.proxies[(ns, name)].url
                        break
                    if elapsed > settings.ready_timeout_s:
                        raise TimeoutError(f"no Ready pod for {ns}/{name} after {elapsed:.0f} s; logs in {fleet.workdir}")
                    show(f"{ns}/{name}: waiting for the first pod", await _safe_sample(fleet, http, ns, name, None, settings.window_s), elapsed, 0)
                    await asyncio.sleep(1)
                # 2. load, then cool-down
                if base_url is not None:
                    load = LoadGenerator(base_url, svc["spec"]["model"]["name"], requests, seed=settings.replay.seed)
                    load_task = asyncio.create_task(load.run(stop))
                    total = settings.duration_s + settings.cooldown_s
                    while not stop.is_set() and not (load_task.done() and load.elapsed() >= total):
                        loads.append(os.getloadavg()[0])
                        sample = await _safe_sample(fleet, http, ns, name, load, settings.window_s)
                        if sample is not None:
                            samples.append(sample)
                        phase = "replaying the trace" if load.elapsed() < settings.duration_s else "trace done: trickle, watching scale-down"
                        show(f"{ns}/{name}: {phase}", sample, load.elapsed(), total)
                        if not settings.live and sample is not None:
                            console.print(_plain_line(sample))
                        try:
                            await asyncio.wait_for(stop.wait(), 1.0)
                        except asyncio.TimeoutError:
                            pass
                    stop.set()
                    await asyncio.gather(load_task, return_exceptions=True)
        console.print("stopping the fleet (draining pods) ...")
    if load is None:
        console.print("[yellow]stopped before any load was sent: no report[/yellow]")
        return 1
    load_note = f"; load average (1 min) during the run {min(loads):.1f} .. {max(loads):.1f}" if loads else ""
    info = RunInfo(command=settings.command, machine=_machine() + load_note, capacity_note=cap_note + ("; " + "; ".join(notes) if notes else ""),
                   trace_note=trace_note, slo_ttft_ms=slo_ttft, slo_itl_ms=slo_itl, window_s=settings.window_s,
                   started=started, duration_s=samples[-1].t if samples else 0.0, service=f"{ns}/{name}",
                   example_file=_rel(settings.example))
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    plot(samples, info, settings.out_dir / "demo.png")
    (settings.out_dir / "report.md").write_text(build_markdown(info, samples, load.records, "demo.png"))
    (settings.out_dir / "samples.json").write_text(json.dumps(samples_as_dicts(samples), indent=0))
    console.print(f"report: {settings.out_dir / 'report.md'}   plot: {settings.out_dir / 'demo.png'}")
    return 0


async def _safe_sample(fleet, http, ns, name, load, window_s) -> Sample | None:
    try:
        return await take_sample(fleet, http, ns, name, load, window_s)
    except (KubeError, aiohttp.ClientError, asyncio.TimeoutError):
        return None


def _plain_line(s: Sample) -> str:
    f = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    return (f"t={s.t:5.0f}s sent={s.sent_rps:4.1f}/s replicas={s.replicas_ready}/{s.replicas_desired} "
            f"ttft_p95={f(s.ttft_p95_ms)}ms itl_p95={f(s.itl_p95_ms)}ms maxNumSeqs={s.max_num_seqs} {s.decision}")


def _machine() -> str:
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{len(os.sched_getaffinity(0))} cores ({cpu}), Python {platform.python_version()}, torch {torch.__version__}"


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def command_line() -> str:
    return "shoal " + " ".join(shlex.quote(a) for a in sys.argv[1:])
