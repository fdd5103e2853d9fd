"""Issue 9 campaigns: API faults and operator crashes, full size; rows go to bench/results/reliability.json.

    .venv/bin/python bench/reliability_api.py                 # both campaigns
    .venv/bin/python bench/reliability_api.py --only faults   # or: --only crashes

API faults: the real operator (`shoal operator`, real kopf over HTTP) against the emulator failing 10% of the
operator's API calls (409, 429 + Retry-After, 500, hang-then-drop; split evenly) and cutting 30% (then 100%) of
its watch streams, while InferenceServices are created, updated and deleted until the operator has run 1,000
reconciles; then the children must be exactly the desired ones (the operator's own pure planner is the judge):
no duplicate, no orphan.
Operator crashes: every write of one full reconcile of an autoscaled service is a crash point; the operator is
SIGKILLed right after it and restarted; the children must converge and the autoscaler's state in status survive.
The harness lives in tests/reliability (api_faults_harness.py, crash_harness.py), shared with the tests.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "reliability"))

from reliability_record import record  # noqa: E402


def api_faults(args: argparse.Namespace, workdir: Path, watch_drop: float) -> dict:
    from api_faults_harness import run_fault_campaign

    run = run_fault_campaign(workdir, reconciles=args.reconciles, rate=args.rate, seed=args.seed, pool=args.pool,
                             watch_drop=watch_drop, pace_s=args.pace, converge_timeout=600)
    row = run.row(f"{args.reconciles:,} reconciles, {args.rate:.0%} of API calls failing, "
                  f"{watch_drop:.0%} of watch streams cut")
    row.update(fault_rate=args.rate, watch_drop_rate=watch_drop, seed=args.seed)
    print(f"api faults: {run.verdict.summary()}; {row}", flush=True)
    return row


def operator_crashes(workdir: Path, round_: int) -> dict:
    """One round: enumerate one reconcile's writes, then crash after each of them (crash_harness.py)."""
    from crash_harness import crash_at, crash_bench, enumerate_writes

    started = time.monotonic()
    with crash_bench(workdir, points=40) as bench:
        writes = enumerate_writes(bench)
        results = []
        for k in range(1, len(writes) + 1):
            result = crash_at(bench, k)
            print(f"round {round_}: crash after write {k}/{len(writes)} ({result.write}): "
                  f"{'ok' if result.ok else 'FAILED'} in {result.seconds:.1f}s; {result.verdict.summary()} "
                  f"{result.state_lost}", flush=True)
            results.append(result)
    return {"scenario": f"round {round_}: SIGKILL right after each of the {len(writes)} writes of one reconcile "
                        "(children, status, autoscaler status, scale, ConfigMap), then restart",
            "faults_injected": len(results), "survived": sum(r.ok for r in results),
            "data_lost": sum(r.verdict.lost() + len(r.state_lost) for r in results),
            "duplicates": sum(len(r.verdict.duplicates) for r in results),
            "orphans": sum(len(r.verdict.orphans) for r in results),
            "autoscaler_state_lost": sum(len(r.state_lost) for r in results),
            "seconds": round(time.monotonic() - started, 1),
            "points": [{"k": r.point, "write": r.write.split("/namespaces/")[-1].split("/", 1)[-1], "ok": r.ok,
                        "seconds": round(r.seconds, 1)} for r in results]}


def command_line() -> str:
    """sys.argv for the record, with --workdir's folder left out (no path of this machine in the results)."""
    argv = ["python", "bench/reliability_api.py", *sys.argv[1:]]
    return " ".join("DIR" if i and argv[i - 1] == "--workdir" else a for i, a in enumerate(argv))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("faults", "crashes"))
    parser.add_argument("--reconciles", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0.10, help="share of the operator's API calls that fail")
    parser.add_argument("--watch-drop", type=float, nargs="+", default=[0.3, 1.0],
                        help="share of its watch streams cut (one scenario per value)")
    parser.add_argument("--crash-rounds", type=int, default=3,
                        help="enumerations of one reconcile (its concurrent writes land in varying order)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pool", type=int, default=150, help="InferenceService names the workload draws from")
    parser.add_argument("--pace", type=float, default=0.03, help="seconds between two changes")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-reliability-") as tmp:
        root = args.workdir or Path(tmp)
        if args.only in (None, "faults"):
            rows = []
            for watch_drop in args.watch_drop:
                workdir = root / f"faults-watch{watch_drop:g}"
                workdir.mkdir(parents=True, exist_ok=True)
                rows.append(api_faults(args, workdir, watch_drop))
            if not args.no_record:
                record("api_faults", rows, command_line())
        if args.only in (None, "crashes"):
            rows = []
            for round_ in range(1, args.crash_rounds + 1):
                workdir = root / f"crashes-{round_}"
                workdir.mkdir(parents=True, exist_ok=True)
                rows.append(operator_crashes(workdir, round_))
                print(f"operator crashes, round {round_}: {rows[-1]['survived']}/{rows[-1]['faults_injected']} "
                      f"converged, data lost {rows[-1]['data_lost']}", flush=True)
            if not args.no_record:
                record("operator_crashes", rows, command_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
