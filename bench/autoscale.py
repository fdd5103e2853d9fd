"""Autoscaling benchmark: every policy on the Azure conversation trace, scaled so its peak minute needs >= 8 replicas.

    .venv/bin/python bench/autoscale.py [--trace PATH] [--peak-replicas 8] [--seed 0]

Writes bench/results/autoscale.json (issue 6's format, plus windows and decision logs) and
bench/results/autoscale.png, and prints the table for bench/RESULTS.md. Replicas are simulated H100s serving the
Llama-3.1-8B shape; shoal.sim.calibration says what calibrates them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

from shoal.sim.capacity import measure_capacity
from shoal.sim.policies import POLICIES
from shoal.sim.report import plot, summary, write_json
from shoal.sim.run import Scenario, prepare, rate_scale_for_peak, run_policy
from shoal.sim.trace import load_trace

HERE = Path(__file__).resolve().parent
DEFAULT_TRACE = HERE.parent.parent / "shared" / "traces" / "azure_llm_2023_conv.csv"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=os.environ.get("SHOAL_TRACE", str(DEFAULT_TRACE)))
    ap.add_argument("--peak-replicas", type=int, default=8)
    ap.add_argument("--slo-ttft-ms", type=float, default=500.0)
    ap.add_argument("--slo-itl-ms", type=float, default=50.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "autoscale.json"))
    ap.add_argument("--plot", default=str(HERE / "results" / "autoscale.png"), help="'' for none")
    ap.add_argument("--policies", default=",".join(POLICIES), help="comma-separated subset (default: all)")
    ap.add_argument("--no-oracle-slo", action="store_true", help="skip the derated-oracle search")
    args = ap.parse_args()
    names = [n for n in args.policies.split(",") if n]
    unknown = set(names) - set(POLICIES)
    if unknown:
        raise SystemExit(f"--policies: unknown {sorted(unknown)}; choose from {', '.join(POLICIES)}")

    probe = Scenario(args.trace, 1.0, args.slo_ttft_ms / 1000, args.slo_itl_ms / 1000, args.seed)
    capacity = measure_capacity(probe.config(), load_trace(args.trace), seed=args.seed)
    k = rate_scale_for_peak(args.trace, args.peak_replicas, capacity)
    scenario = Scenario(args.trace, k, probe.slo_ttft_s, probe.slo_itl_s, args.seed)
    prepared = prepare(scenario, capacity)
    oracle_peak = max(prepared.context.needed(r) for r in prepared.context.minute_rates)
    print(f"capacity at default limits {capacity.rate_rps:.2f} req/s per replica; rate scale {k}; "
          f"oracle needs {oracle_peak} replicas at the peak minute")

    results, started = {}, time.time()
    for name in names:
        t0 = time.time()
        results[name] = run_policy(prepared, name)
        s = summary(results[name])
        print(f"{name:16s} attainment {s['attainment']:7.1%}  TTFT {s['ttft_attainment']:6.1%}  ITL "
              f"{s['itl_attainment']:6.1%}  GPU-h {s['gpu_hours']:6.3f}  goodput {s['goodput_fraction']:6.1%}  "
              f"scale {s['scale_events']:3d}  tune {s['tune_events']:3d}  ({time.time() - t0:.0f} s)", flush=True)
    # the oracle as defined sizes each minute from one replica's capacity under Poisson arrivals; on the trace that
    # misses windows, so also find the smallest uniform derating at which the same oracle meets the SLO
    for factor in () if args.no_oracle_slo else (0.9, 0.8, 0.7, 0.6):
        derated = replace(prepared, context=replace(prepared.context, capacity_rps=capacity.rate_rps * factor))
        r = run_policy(derated, "oracle")
        print(f"oracle x{factor:.1f} capacity: attainment {r['attainment']:.1%}  GPU-h {r['gpu_hours']:.3f}", flush=True)
        if r["attainment"] >= 0.99:
            r["capacity_factor"] = factor
            results["oracle-slo"] = r
            break
    header = {
        "trace": Path(args.trace).name, "rate_scale": k,
        "slo": {"ttft_p95_ms": args.slo_ttft_ms, "itl_p95_ms": args.slo_itl_ms},
        "seed": args.seed, "calibration": scenario.cal.name,
        "capacity_rps_default_limits": capacity.rate_rps, "oracle_peak_replicas": oracle_peak,
        "pod_start_delay_s": scenario.cal.pod_start_delay_s, "warmup_s": prepared.context.warmup_s,
        "python": platform.python_version(), "wall_s": round(time.time() - started, 1),
    }
    write_json(args.out, header, results)
    shown = {n: results[n] for n in ("shoal", "shoal-no-tuning", "kpa", "oracle") if n in results}
    if args.plot and shown:
        plot(args.plot, shown, scenario.slo_ttft_s, scenario.slo_itl_s)
    print(json.dumps({n: summary(r) for n, r in results.items()}, indent=1))
    if "oracle-slo" in results:
        print(f"oracle-slo: capacity x{results['oracle-slo']['capacity_factor']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
