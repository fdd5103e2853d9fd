"""Server overhead: output tokens/s streamed over HTTP vs `LLM.generate` on the same workload, same run.

The workload: `--concurrency` requests of `--prompt-tokens` random token ids, each forced to `--output-tokens`
tokens (ignore_eos, greedy). Offline, all go to one `LLM.generate` call, made from the main thread and again from a
worker thread (the server's engine loop runs in a worker thread, which some CPUs run faster) and from a worker
thread with one torch CPU thread (as the server's engine process steps on CUDA); the ratio is taken against the
fastest. Online, a `shoal serve` child process gets them as concurrent streaming
/v1/completions requests from aiohttp clients (`--client-procs` processes) on the same machine. Output tokens are
counted from each stream's final usage chunk (a chunk may carry several tokens), and a stream counts as failed
unless it ends with a finish_reason, its usage and `[DONE]`. The client reads the raw SSE bytes and decodes only
the stream's last chunks, so at GPU rates its own parsing is not what limits the figure. Both engines have the
same settings.

    .venv/bin/python bench/serve_overhead.py                       # CPU, SmolLM2-135M
    .venv/bin/python bench/serve_overhead.py --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_trace import completion_body  # noqa: E402


def stream_summary(body: bytes) -> tuple[int, bool, int]:
    """(completion tokens from the usage chunk, whether the stream ended properly, text chunks) of one SSE body."""
    events = [e for e in body.split(b"\n\n") if e.startswith(b"data: ")]
    if len(events) < 3 or events[-1] != b"data: [DONE]":
        return 0, False, 0
    usage = json.loads(events[-2][6:]).get("usage") or {}
    last = json.loads(events[-3][6:])["choices"]
    finished = bool(last) and last[0].get("finish_reason") is not None
    return usage.get("completion_tokens", 0), finished and "completion_tokens" in usage, len(events) - 3


async def stream_tokens(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[int, bool, int]:
    data = bytearray()
    try:
        async with session.post(url + "/v1/completions", json=body) as response:
            async for block in response.content.iter_any():
                data += block
            tokens, ok, chunks = stream_summary(bytes(data)) if response.status == 200 else (0, False, 0)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        tokens, ok, chunks = 0, False, 0
        data += f"\n[client: {type(exc).__name__}: {exc}]".encode()
    if not ok:
        print(f"failed stream, its last bytes: {bytes(data[-300:])!r}", file=sys.stderr, flush=True)
    return tokens, ok, chunks


async def http_run(url: str, model: str, prompts: list[list[int]], output_tokens: int,
                   start_at: float | None = None) -> tuple[float, float, int, int, int]:
    """(start, end) wall-clock times, output tokens, failed requests and text chunks of all prompts sent at once."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=3600)) as session:
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.time()))
        start = time.time()
        results = await asyncio.gather(*(stream_tokens(session, url, completion_body(model, p, output_tokens))
                                         for p in prompts))
        end = time.time()
    return (start, end, sum(r[0] for r in results), sum(not r[1] for r in results), sum(r[2] for r in results))


def _client_process(url: str, model: str, prompts: list[list[int]], output_tokens: int, start_at: float):
    return asyncio.run(http_run(url, model, prompts, output_tokens, start_at))


def http_load(url: str, model: str, prompts: list[list[int]], output_tokens: int, procs: int):
    """Wall seconds, output tokens, failures and text chunks, with the requests spread over `procs` client
    processes that start together (so the client's SSE parsing is not what limits the measurement)."""
    if procs == 1:
        start, end, *counts = asyncio.run(http_run(url, model, prompts, output_tokens))
        return end - start, *counts
    start_at = time.time() + 5.0  # after the workers have spawned and imported
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        parts = pool.starmap(_client_process, [(url, model, prompts[i::procs], output_tokens, start_at)
                                               for i in range(procs)])
    return (max(p[1] for p in parts) - min(p[0] for p in parts), *(sum(p[i] for p in parts) for i in (2, 3, 4)))


def offline_tok_s(llm, prompts, params, in_thread: bool) -> float:
    """LLM.generate output tokens/s, called from this thread or from a worker thread (as the server's engine runs)."""
    box = {}

    def run() -> None:
        start = time.perf_counter()
        outputs = llm.generate(prompts, params)
        box["tok_s"] = sum(len(o.token_ids) for o in outputs) / (time.perf_counter() - start)

    if in_thread:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
    else:
        run()
    return box["tok_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="default: the prepared SmolLM2 folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--load-format", default="safetensors",
                        help="dummy: random weights of the folder's config.json (where the weights can't travel)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-offline-main", action="store_true",
                        help="measure offline from a worker thread only (the faster on the CPUs measured so far; "
                             "the main-thread run of a slow CPU takes minutes)")
    parser.add_argument("--warmup-runs", type=int, default=0,
                        help="whole workload runs (offline and HTTP) before the measured ones, not recorded: on a GPU "
                             "the first run pays the compilation of new batch shapes")
    parser.add_argument("--client-procs", type=int, default=1,
                        help="client processes sharing the requests (GPU rates: several, so the client keeps up)")
    parser.add_argument("--serve-args", default="", help="more `shoal serve` flags, e.g. '--engine-process false'")
    parser.add_argument("--kv-cache-tokens", type=int, default=None,
                        help="KV cache size of each engine (default: twice the workload's tokens, so the offline "
                             "engine and the server fit one GPU together)")
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
    kv_tokens = args.kv_cache_tokens or max(2 * args.concurrency * (args.prompt_tokens + args.output_tokens), 16384)
    engine_args = {"device": args.device, "dtype": args.dtype, "max_num_seqs": args.concurrency,
                   "load_format": args.load_format, "kv_cache_tokens": kv_tokens}
    flags = ["--model", str(model_dir), "--host", "127.0.0.1", "--port", "0", "--device", args.device,
             "--dtype", args.dtype, "--max-num-seqs", str(args.concurrency), "--load-format", args.load_format,
             "--kv-cache-tokens", str(kv_tokens), "--log-level", "warning", *args.serve_args.split()]

    llm = LLM(str(model_dir), **engine_args)
    llm.generate(prompts[:4], SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))  # warm-up
    runs = []
    with ServerProcess(flags) as server:
        model = model_dir.name
        http_load(server.url, model, prompts[:4], 8, 1)  # warm-up
        for _ in range(args.warmup_runs):
            offline_tok_s(llm, prompts, params, in_thread=True)
            http_load(server.url, model, prompts, args.output_tokens, args.client_procs)
        for repeat in range(args.repeats):
            offline_main = None if args.skip_offline_main else offline_tok_s(llm, prompts, params, in_thread=False)
            offline_thread = offline_tok_s(llm, prompts, params, in_thread=True)
            # the server's engine child on CUDA steps with one torch CPU thread; offline gets that setting too
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            offline_one = offline_tok_s(llm, prompts, params, in_thread=True)
            torch.set_num_threads(threads)
            http_wall, http_tokens, failed, chunks = http_load(server.url, model, prompts, args.output_tokens,
                                                               args.client_procs)
            run = {
                "offline_tok_s": offline_main and round(offline_main, 1), "offline_thread_tok_s": round(offline_thread, 1),
                "offline_thread_1cpu_tok_s": round(offline_one, 1),
                "http_tok_s": round(http_tokens / http_wall, 1), "http_tokens": http_tokens, "http_failed": failed,
                # above 1 when the server coalesced outputs that came while a stream was busy
                "tokens_per_chunk": round(http_tokens / max(chunks, 1), 2),
            }
            # against the faster offline run: the engine's step loop runs faster off the main thread on some CPUs
            run["ratio"] = round(run["http_tok_s"] / max(offline_main or 0.0, offline_thread, offline_one), 3)
            runs.append(run)
            print(f"repeat {repeat}: {json.dumps(run)}", flush=True)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "config": {k: str(v) for k, v in vars(args).items()} | {"model_dir": model_dir.name},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
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
