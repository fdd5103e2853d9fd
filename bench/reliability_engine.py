"""Reliability campaign of the engine server (issue 9): hostile input, aborted streams, overload, drain under load.

Runs real `shoal serve` processes of SmolLM2-135M-Instruct on CPU and records rows through reliability_record:
    engine_input  fuzz cases of every route (hypothesis) + 1,000 streams aborted at random points
    overload      10x the measured capacity for a minute: 429s with Retry-After, RSS bounded, admitted TTFT p95
    drain         SIGTERM with 64 streams in flight; fleet scale-down with streams through the service proxy

    python bench/reliability_engine.py [--only engine_input,overload,drain] [--fuzz-examples 3000] [--aborts 1000]
        [--overload-seconds 60] [--drain-streams 64] [--no-record]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "reliability"), str(ROOT / "bench")]

import engine_faults_harness as h  # noqa: E402
import engine_fleet_drain  # noqa: E402
import engine_fuzz as fz  # noqa: E402
import engine_load  # noqa: E402


def fuzz_campaign(examples: int) -> dict:
    """`examples` hypothesis cases over every route; every violation is kept (the campaign does not stop at one)."""
    import tempfile

    from hypothesis import HealthCheck, given, settings

    token = Path(tempfile.mkdtemp()) / "token"
    token.write_text(fz.ADMIN_TOKEN)
    counts = {"cases": 0, "bad": 0, "5xx": 0, "health_failures": 0}
    statuses: dict[int, int] = {}
    samples: list[str] = []
    with h.engine_server("--max-model-len", "128", "--max-num-seqs", "8", admin_token_file=token) as server:
        rss_before = h.rss_bytes(server.proc.pid)
        rss_peak = rss_before

        def one(case: fz.Case) -> None:
            nonlocal rss_peak
            try:
                reply = h.exchange(server.url, case.method, case.path, case.body, case.headers)
                found = fz.violations(case, reply.status, reply.headers, reply.body)
            except OSError as exc:  # counted, not fatal: the campaign keeps going and reports it
                reply, found = h.Reply(0, {}, b""), [f"client could not complete the exchange: {exc!r}"]
            if h.exchange(server.url, "GET", "/health").status != 200:
                counts["health_failures"] += 1
                found.append("/health not OK")
            counts["cases"] += 1
            statuses[reply.status] = statuses.get(reply.status, 0) + 1
            counts["5xx"] += reply.status >= 500
            if found:
                counts["bad"] += 1
                if len(samples) < 20:
                    samples.append(f"{found} <- {case.describe()}")
            if counts["cases"] % 100 == 0:
                rss_peak = max(rss_peak, h.rss_bytes(server.proc.pid))
                print(f"  fuzz {counts['cases']}/{examples}: {counts['bad']} bad, statuses {statuses}", flush=True)

        for case in fz.named_cases().values():
            one(case)
        settings(max_examples=examples, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))(given(fz.all_cases)(one))()
        h.wait_for(lambda: h.engine_idle(server.url), 60)
        rss_after = h.rss_bytes(server.proc.pid)
        alive = server.proc.poll() is None
    crashes = len(h.crash_lines(server.log()))
    for s in samples:
        print("  VIOLATION", s)
    return {
        "scenario": "fuzz every route (hostile bodies, raw bytes, odd methods)",
        "faults_injected": counts["cases"], "survived": counts["cases"] - counts["bad"],
        "data_lost": counts["5xx"] + crashes + (0 if alive else 1),
        "responses_5xx": counts["5xx"], "violations": counts["bad"], "health_failures": counts["health_failures"],
        "crash_lines": crashes, "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "rss_before_mib": round(rss_before / 2**20, 1), "rss_peak_mib": round(rss_peak / 2**20, 1),
        "rss_after_mib": round(rss_after / 2**20, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="engine_input,overload,drain")
    parser.add_argument("--fuzz-examples", type=int, default=3000)
    parser.add_argument("--aborts", type=int, default=1000)
    parser.add_argument("--overload-seconds", type=float, default=60.0)
    parser.add_argument("--drain-streams", type=int, default=64)
    parser.add_argument("--no-record", action="store_true", help="print the rows, do not write reliability.json")
    args = parser.parse_args()
    only = set(args.only.split(","))
    sections: dict[str, list[dict]] = {}
    if "engine_input" in only:
        sections["engine_input"] = [fuzz_campaign(args.fuzz_examples),
                                    asyncio.run(engine_load.abort_campaign(args.aborts, concurrency=32,
                                                                           rng=random.Random(9)))]
    if "overload" in only:
        sections["overload"] = [asyncio.run(engine_load.overload_campaign(args.overload_seconds, factor=10.0))]
    if "drain" in only:
        sections["drain"] = [asyncio.run(engine_load.sigterm_drain_campaign(args.drain_streams)),
                             asyncio.run(engine_fleet_drain.fleet_scale_down_campaign(streams=16))]
    for name, rows in sections.items():
        rows[:] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]  # raw results stay here
        print(f"== {name}\n" + json.dumps(rows, indent=1))
        if not args.no_record:
            from reliability_record import record

            record(name, rows)
    lost = sum(r["data_lost"] for rows in sections.values() for r in rows)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
