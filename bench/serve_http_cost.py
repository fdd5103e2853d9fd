"""CPU time the server's HTTP side spends per streamed token.

The server runs with `--engine-process true`, so its own process does only HTTP work (parsing, per-request
streams, SSE encoding, socket writes) while the engine steps in a child; the server process's CPU seconds over
the output tokens streamed is the HTTP side's cost per token, a number that holds on a busy machine where wall
clock does not. Its inverse bounds the tokens/s one server process can stream.

    .venv/bin/python bench/serve_http_cost.py --model-dir DIR [--serve-args "--stream-interval 4"]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_overhead import http_load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--output-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve-args", default="", help="more `shoal serve` flags")
    args = parser.parse_args()

    from shoal.engine.server.launcher import ServerProcess

    rng = random.Random(0)
    prompts = [[rng.randrange(1000, 10000) for _ in range(args.prompt_tokens)] for _ in range(args.concurrency)]
    flags = ["--model", str(args.model_dir), "--host", "127.0.0.1", "--port", "0", "--max-num-seqs",
             str(args.concurrency), "--kv-cache-tokens", "16384", "--log-level", "warning", "--engine-process", "true",
             *args.serve_args.split()]
    runs = []
    with ServerProcess(flags) as server:
        process = psutil.Process(server.proc.pid)
        http_load(server.url, args.model_dir.name, prompts[:4], 8, 1)  # warm-up
        for _ in range(args.repeats):
            before = sum(process.cpu_times()[:2])
            wall, tokens, failed = http_load(server.url, args.model_dir.name, prompts, args.output_tokens, 1)
            cpu = sum(process.cpu_times()[:2]) - before
            runs.append({"us_per_token": round(cpu / tokens * 1e6, 1), "tok_s": round(tokens / wall), "failed": failed})
            print(json.dumps(runs[-1]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
