"""Server overhead: output tokens/s streamed over HTTP vs `LLM.generate` on the same workload, same run.

The workload: `--concurrency` requests of `--prompt-tokens` random token ids, each forced to `--output-tokens`
tokens (ignore_eos, greedy). Offline, all go to one `LLM.generate` call; online, a `shoal serve` child process
gets them as concurrent streaming /v1/completions requests from an aiohttp client in this process (the client's
SSE parsing runs on the same machine and counts against the server). Both engines have the same settings.

    .venv/bin/python bench/serve_overhead.py                       # CPU, SmolLM2-135M
    .venv/bin/python bench/serve_overhead.py --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_trace import Result, completion_body, stream_completion  # noqa: E402


async def http_run(url: str, model: str, prompts: list[list[int]], output_tokens: int) -> tuple[float, int, int]:
    """Wall seconds, output tokens and failed requests of all prompts sent at once."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=3600)) as session:
        results = [Result(0.0, len(p), output_tokens) for p in prompts]
        start = time.perf_counter()
        await asyncio.gather(*(stream_completion(session, url, completion_body(model, p, output_tokens), r)
                               for p, r in zip(prompts, results)))
        wall = time.perf_counter() - start
    return wall, sum(r.completion_tokens for r in results), sum(not r.ok for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="default: the prepared SmolLM2 folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/serve_overhead.json"))
    args = parser.parse_args()

    import torch

    from shoal.engine import LLM, SamplingParams
    from shoal.engine.model_prepare import prepare
    from shoal.engine.server.launcher import ServerProcess

    model_dir = args.model_dir or prepare("smollm2")
    rng = random.Random(args.seed)
    prompts = [[rng.randrange(1000, 10000) for _ in range(args.prompt_tokens)] for _ in range(args.concurrency)]
    params = SamplingParams(temperature=0.0, max_tokens=args.output_tokens, ignore_eos=True)
    engine_args = {"device": args.device, "dtype": args.dtype, "max_num_seqs": args.concurrency}
    flags = ["--model", str(model_dir), "--host", "127.0.0.1", "--port", "0", "--device", args.device,
             "--dtype", args.dtype, "--max-num-seqs", str(args.concurrency), "--log-level", "warning"]

    llm = LLM(str(model_dir), **engine_args)
    llm.generate(prompts[:4], SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))  # warm-up
    runs = []
    with ServerProcess(flags) as server:
        model = model_dir.name
        asyncio.run(http_run(server.url, model, prompts[:4], 8))  # warm-up
        for repeat in range(args.repeats):
            start = time.perf_counter()
            outputs = llm.generate(prompts, params)
            offline_wall = time.perf_counter() - start
            offline_tokens = sum(len(o.token_ids) for o in outputs)
            http_wall, http_tokens, failed = asyncio.run(http_run(server.url, model, prompts, args.output_tokens))
            run = {
                "offline_tok_s": round(offline_tokens / offline_wall, 1), "offline_tokens": offline_tokens,
                "http_tok_s": round(http_tokens / http_wall, 1), "http_tokens": http_tokens, "http_failed": failed,
            }
            run["ratio"] = round(run["http_tok_s"] / run["offline_tok_s"], 3)
            runs.append(run)
            print(f"repeat {repeat}: {json.dumps(run)}", flush=True)
    report = {
        "config": {k: str(v) for k, v in vars(args).items()} | {"model_dir": model_dir.name},
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
        "runs": runs,
        "median_ratio": round(statistics.median(r["ratio"] for r in runs), 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
