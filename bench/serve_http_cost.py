"""CPU time the server's HTTP side spends per streamed token, and what that bounds its tokens/s at.

The server runs with `--engine-process true`, so its own process does only HTTP work (parsing, per-request
streams, SSE encoding, socket writes) while the engine steps in a child; the server process's CPU seconds over
the output tokens streamed is the HTTP side's cost per token, a number that holds on a busy machine where wall
clock does not. Its inverse is the tokens/s one core of HTTP work can stream. The engine child's and the client's
(this process, parsing the SSE) CPU per token are printed beside it: at GPU rates each of the three must keep up.

`--baseline-src DIR` measures a second server importing `shoal` from DIR (e.g. a `git worktree` of an older
commit's `src`) in the same run, alternating with the current one, so a change is read against its before.

    .venv/bin/python bench/serve_http_cost.py --model-dir DIR [--serve-args "--stream-interval 4"]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_overhead import http_load  # noqa: E402


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def children_cpu_s(process: psutil.Process) -> float:
    return sum(cpu_s(child) for child in process.children(recursive=True))


def measure(server, model: str, prompts, output_tokens: int) -> dict:
    """One load of all prompts at once: CPU microseconds per output token of server, engine and client."""
    parent, client = psutil.Process(server.proc.pid), psutil.Process()
    before = (cpu_s(parent), children_cpu_s(parent), cpu_s(client))
    start, end, tokens, failed, chunks, _ = http_load(server.url, model, prompts, output_tokens, 1)
    wall = end - start
    after = (cpu_s(parent), children_cpu_s(parent), cpu_s(client))
    if tokens == 0:
        raise RuntimeError(f"no tokens streamed ({failed} requests failed; see the messages above)")
    server_us, engine_us, client_us = ((b - a) / tokens * 1e6 for a, b in zip(before, after))
    return {"server_us_per_token": round(server_us, 1), "server_tok_s_per_core": round(1e6 / server_us),
            "engine_us_per_token": round(engine_us, 1), "client_us_per_token": round(client_us, 1),
            "wall_tok_s": round(tokens / wall), "tokens": tokens, "tokens_per_chunk": round(tokens / max(chunks, 1), 2),
            "failed": failed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--output-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve-args", default="", help="more `shoal serve` flags")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="also measure a server importing shoal from this `src` folder, alternating")
    parser.add_argument("--out", type=Path, default=None, help="write the runs here as JSON")
    args = parser.parse_args()

    from shoal.engine.server.launcher import ServerProcess

    rng = random.Random(0)
    prompts = [[rng.randrange(1000, 10000) for _ in range(args.prompt_tokens)] for _ in range(args.concurrency)]
    flags = ["--model", str(args.model_dir), "--host", "127.0.0.1", "--port", "0", "--max-num-seqs",
             str(args.concurrency), "--kv-cache-tokens", "16384", "--log-level", "warning", "--engine-process", "true",
             *args.serve_args.split()]
    sides = {"current": None}
    if args.baseline_src is not None:
        path = os.pathsep.join(filter(None, [str(args.baseline_src.resolve()), os.environ.get("PYTHONPATH")]))
        sides["baseline"] = {"PYTHONPATH": path}
    model = args.model_dir.name
    servers = {name: ServerProcess(flags, env=env).start() for name, env in sides.items()}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    try:
        for server in servers.values():
            http_load(server.url, model, prompts[:4], 8, 1)  # warm-up
        for repeat in range(args.repeats):
            for name, server in servers.items():
                run = measure(server, model, prompts, args.output_tokens)
                runs[name].append(run)
                print(f"repeat {repeat} {name}: {json.dumps(run)}", flush=True)
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(60)
    summary = {name: {key: statistics.median(r[key] for r in rs)
                      for key in ("server_us_per_token", "server_tok_s_per_core", "engine_us_per_token",
                                  "client_us_per_token")}
               for name, rs in runs.items()}
    print("median:", json.dumps(summary))
    if args.out is not None:
        report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "config": {k: str(v) for k, v in vars(args).items()},
                  "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                              "python": platform.python_version(), "load_avg": os.getloadavg()},
                  "runs": runs, "median": summary}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
