"""Which CPUs of this machine slow each other down: hidden hyperthread siblings of a virtual machine's vCPUs.

A VM's sysfs may say every vCPU is a core of its own while the host runs two vCPUs on the two hardware threads of one
core; a busy process on the sibling then slows the engine's step loop by a third or more. For each CPU j, this
times a fixed pure-Python workload on CPU `--cpu` while a busy-looping process runs on CPU j, against the same
workload alone; a ratio well above 1 marks j as sharing a core (or a cache) with `--cpu`. Prints a table.

  python3 bench/cpu_siblings.py [--cpu 0] [--out F]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time


def work(n: int = 200_000) -> float:
    """Seconds for a fixed mix of what the engine's host loop does: attribute and dict work, small lists."""
    t = time.perf_counter()
    d, acc = {}, []
    for i in range(n):
        d[i & 1023] = i
        acc.append(d.get(i & 511, 0) + i)
        if len(acc) > 64:
            acc.clear()
    return time.perf_counter() - t


def spin(cpu: int, stop) -> None:
    os.sched_setaffinity(0, {cpu})
    while not stop.is_set():
        work(20_000)


def timed(cpu: int, repeats: int = 5) -> float:
    os.sched_setaffinity(0, {cpu})
    work()  # warm
    return statistics.median(work() for _ in range(repeats))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    ctx = multiprocessing.get_context("spawn")
    alone = timed(args.cpu)
    rows = {}
    for j in cpus:
        if j == args.cpu:
            continue
        stop = ctx.Event()
        busy = ctx.Process(target=spin, args=(j, stop))
        busy.start()
        time.sleep(0.3)  # the neighbour is running
        with_neighbour = timed(args.cpu)
        stop.set()
        busy.join()
        rows[j] = round(with_neighbour / alone, 3)
    again = timed(args.cpu)
    assert rows and alone > 0, "nothing was timed"
    report = {"cpu": args.cpu, "alone_ms": round(1000 * alone, 2), "alone_again_ms": round(1000 * again, 2),
              "slowdown_with_busy_cpu": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    print(f"CPU {args.cpu}: workload {report['alone_ms']} ms alone ({report['alone_again_ms']} ms at the end)")
    print("| busy CPU | " + " | ".join(map(str, rows)) + " |")
    print("| slowdown | " + " | ".join(f"{v:.2f}" for v in rows.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
