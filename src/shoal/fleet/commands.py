"""`shoal demo` (the whole loop, watched live, ending in a report) and `shoal fleet up` (the same fleet, left running)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the local fleet demo: operator, real engines, Prometheus, a replayed trace, a report",
        description="Start a local fleet (API emulator, kubelet, Prometheus, operator), apply an example "
                    "InferenceService, replay the Azure conversation trace against it (compressed in time, token "
                    "counts scaled down for CPU), show replicas, latency and batch limits live, and write a report "
                    "and a plot. Ctrl-C stops everything it started.")
    demo.add_argument("--example", type=Path, default=None, help="InferenceService YAML (default examples/local-cpu.yaml)")
    demo.add_argument("--out", type=Path, default=Path("shoal-demo"), help="folder for report.md, demo.png, samples.json")
    demo.add_argument("--duration", type=float, default=180.0, help="seconds of replayed load (the trace's hour squeezed in)")
    demo.add_argument("--cooldown", type=float, default=120.0,
                      help="seconds of a light trickle after the trace, to watch the scale-down")
    demo.add_argument("--cooldown-rate", type=float, default=1 / 15, help="requests/s of that trickle (one every 15 s)")
    demo.add_argument("--operator-period", type=float, default=5.0,
                      help="the operator's control-loop period in seconds (SHOAL_AUTOSCALER_PERIOD_SECONDS; its default is 15)")
    demo.add_argument("--rate", type=float, default=0.6, help="mean requests/s of the replay (the trace's shape is kept)")
    demo.add_argument("--token-divisor", type=float, default=16.0, help="divide the trace's token counts by this")
    demo.add_argument("--max-prompt-tokens", type=int, default=256)
    demo.add_argument("--max-output-tokens", type=int, default=48)
    demo.add_argument("--trace", type=Path, default=None, help="trace CSV (default ../shared/traces/azure_llm_2023_conv.csv)")
    demo.add_argument("--cores-per-replica", type=int, default=1)
    demo.add_argument("--scale-down-stabilization", type=int, default=30,
                      help="override the example's scaleDownStabilizationSeconds")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-live", action="store_true", help="print one line a second instead of the live view")
    demo.add_argument("--keep-logs", action="store_true", help="keep the fleet's folder (logs, kubeconfig) after the run")
    demo.add_argument("--operator-arg", action="append", default=[], help="extra argument for `shoal operator`")
    demo.set_defaults(func=run_demo)

    fleet = subparsers.add_parser("fleet", help="the local fleet (API emulator, kubelet, Prometheus, operator)")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", metavar="COMMAND")
    up = fleet_sub.add_parser("up", help="start the local fleet and leave it running until Ctrl-C",
                              description="Start the local fleet and print a kubeconfig; `kubectl apply -f examples/"
                                          "local-cpu.yaml` then runs real engines on this machine.")
    up.add_argument("--workdir", type=Path, default=None, help="keep logs, kubeconfig and pod folders here")
    up.add_argument("--cores-per-replica", type=int, default=1)
    up.add_argument("--no-operator", action="store_true", help="start everything but the operator")
    up.add_argument("--operator-arg", action="append", default=[], help="extra argument for `shoal operator`")
    up.set_defaults(func=run_fleet_up)
    fleet.set_defaults(func=lambda args: (fleet.print_help(), 2)[1])


def run_demo(args: argparse.Namespace) -> int:
    import asyncio

    from shoal.fleet.demo import DemoSettings, command_line, run_demo as demo
    from shoal.fleet.trace import ReplayConfig

    kwargs = {}
    if args.example is not None:
        kwargs["example"] = args.example
    settings = DemoSettings(
        out_dir=args.out,
        duration_s=args.duration,
        cooldown_s=args.cooldown,
        replay=ReplayConfig(duration_s=args.duration, mean_rps=args.rate, token_divisor=args.token_divisor,
                            max_prompt_tokens=args.max_prompt_tokens, max_output_tokens=args.max_output_tokens,
                            seed=args.seed),
        trace=args.trace,
        cores_per_replica=args.cores_per_replica,
        scale_down_stabilization_s=args.scale_down_stabilization,
        live=not args.no_live,
        command=command_line(),
        operator_args=tuple(args.operator_arg),
        keep_logs=args.keep_logs,
        operator_period_s=args.operator_period,
        cooldown_rps=args.cooldown_rate,
        **kwargs,
    )
    return _report_errors("shoal demo", lambda: asyncio.run(demo(settings)))


def _report_errors(what: str, fn) -> int:
    """Errors a user can fix (missing trace, Prometheus not installed, a pod that never got ready) in one line."""
    import sys

    try:
        return fn()
    except (FileNotFoundError, TimeoutError, ValueError) as e:
        print(f"{what}: {e}", file=sys.stderr)
        return 1


def run_fleet_up(args: argparse.Namespace) -> int:
    import asyncio

    return _report_errors("shoal fleet up", lambda: asyncio.run(_fleet_up(args)))


async def _fleet_up(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from shoal.fleet.fleet import FleetSettings, LocalFleet

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings = FleetSettings(workdir=args.workdir, cores_per_replica=args.cores_per_replica,
                             operator=not args.no_operator, operator_args=tuple(args.operator_arg))
    async with LocalFleet(settings) as fleet:
        print(f"local fleet up: {fleet.slots.capacity} replica slot(s) of {args.cores_per_replica} core(s)")
        print(f"  export KUBECONFIG={fleet.kubeconfig}")
        print("  kubectl apply --validate=false -f examples/local-cpu.yaml ; kubectl get shoal ; kubectl get pods,svc")
        print("  a Service's local address is its EXTERNAL-IP and port in `kubectl get svc` (status.loadBalancer)")
        print(f"  Prometheus: {fleet.prometheus.url}   logs: {fleet.workdir}")
        print("Ctrl-C stops everything.", flush=True)
        known: set = set()
        while not stop.is_set():
            for key, proxy in fleet.proxies.items():
                if key not in known:
                    known.add(key)
                    print(f"  Service {key[0]}/{key[1]} -> {proxy.url}/v1", flush=True)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
        print("stopping (draining pods) ...", flush=True)
    return 0
