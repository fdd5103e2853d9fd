"""`shoal sim`: replay a trace against a simulated fleet under one scaling policy (or several, comma-separated)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sim",
        help="replay a request trace against a simulated fleet under a scaling policy",
        description="Discrete-event fleet simulator: H100 / Llama-3.1-8B replicas (see shoal.sim.calibration for "
        "what calibrates them), Prometheus-style metric windows, Shoal's planners or a baseline autoscaler.",
    )
    p.add_argument("--trace", required=True, help="CSV with TIMESTAMP,ContextTokens,GeneratedTokens")
    p.add_argument("--rate-scale", type=float, required=True, help="replay each request this many times on average")
    p.add_argument("--policy", default="shoal",
                   help="shoal, shoal-no-tuning, static-peak, static-mean, kpa, keda-queue, wva, oracle "
                        "(comma-separated for several)")
    p.add_argument("--slo-ttft-ms", type=float, default=500.0)
    p.add_argument("--slo-itl-ms", type=float, default=50.0)
    p.add_argument("--json", dest="json_out", help="write the results here")
    p.add_argument("--plot", help="write the plot (PNG) here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--capacity-probe-s", type=float, default=600.0,
                   help="simulated seconds per probe when measuring one replica's capacity (sizes oracle/static)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shoal.sim.policies import POLICIES
    from shoal.sim.report import plot, summary, write_json
    from shoal.sim.run import Scenario, prepare, run_policy

    names = [n.strip() for n in args.policy.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise SystemExit(f"--policy: unknown {', '.join(unknown)}; choose from {', '.join(POLICIES)}")
    try:
        scenario = Scenario(args.trace, args.rate_scale, args.slo_ttft_ms / 1000, args.slo_itl_ms / 1000, args.seed)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    prepared = prepare(scenario, probe_s=args.capacity_probe_s)
    print(f"one replica at default limits carries {prepared.capacity.rate_rps:.2f} req/s inside the SLO "
          f"({scenario.cal.name})")
    results = {}
    for name in names:
        results[name] = run_policy(prepared, name)
        s = summary(results[name])
        print(f"{name:16s} attainment {s['attainment']:.1%} (TTFT {s['ttft_attainment']:.1%}, ITL "
              f"{s['itl_attainment']:.1%})  GPU-h {s['gpu_hours']:.3f}  goodput {s['goodput_rps']:.1f} req/s  "
              f"scale {s['scale_events']}  tune {s['tune_events']}")
    header = {"trace": args.trace, "rate_scale": args.rate_scale, "seed": args.seed,
              "slo": {"ttft_p95_ms": args.slo_ttft_ms, "itl_p95_ms": args.slo_itl_ms},
              "calibration": scenario.cal.name, "capacity_rps_default_limits": prepared.capacity.rate_rps}
    if args.json_out:
        write_json(args.json_out, header, results)
    if args.plot:
        plot(args.plot, results, scenario.slo_ttft_s, scenario.slo_itl_s)
    return 0
