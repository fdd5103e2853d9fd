"""Count the replica flap of noisy flat load: tests/autoscale's closed-loop plant over many seeds.

    .venv/bin/python bench/autoscale_flaps.py [--runs 1000] [--minutes 60]

A run "flaps" when, after the first third (by then the capacity is learned), the replica count changes 3 or more
times. Also checks the unit test's promises on every run: within one replica after settling, and no scale-down
within a stabilization window of a scale-up. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "autoscale"))
from test_planners import SPEC, _changes, _closed_loop  # noqa: E402  (the plant the unit test drives)


def count(runs: int, minutes: int) -> dict:
    flaps, broken, total_changes = [], [], 0
    for seed in range(runs):
        history = _closed_loop(seed, minutes=minutes)
        learned = len(history) // 3
        changes = [c for c in _changes(history) if c[0] > learned]
        total_changes += len(changes)
        if len(changes) >= 3:
            flaps.append(seed)
        settled = history[learned:]
        quick = any(up > 0 > down and (j - i) * 15 < SPEC.scale_down_stabilization_s
                    for (i, up), (j, down) in zip(changes, changes[1:]))
        if max(settled) - min(settled) > 1 or quick:
            broken.append(seed)
    return {"runs": runs, "minutes": minutes, "flapping_runs": len(flaps), "flapping_seeds": flaps[:20],
            "changes_after_settling": total_changes, "promise_broken_runs": len(broken)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--minutes", type=int, default=60)
    args = ap.parse_args()
    t0 = time.time()
    result = count(args.runs, args.minutes)
    result["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
