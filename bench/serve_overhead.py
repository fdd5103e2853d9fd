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
import atexit
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


async def stream_tokens(session: aiohttp.ClientSession, url: str, body: dict, times: list | None = None
                        ) -> tuple[int, bool, int]:
    """Stream one request; appends (sent, headers, first bytes, end) wall-clock times to `times` when given."""
    data = bytearray()
    sent = first = time.time()
    try:
        async with session.post(url + "/v1/completions", json=body) as response:
            headers = time.time()
            async for block in response.content.iter_any():
                if not data:
                    first = time.time()
                data += block
            if times is not None:
                times.append((sent, headers, first, time.time()))
            tokens, ok, chunks = stream_summary(bytes(data)) if response.status == 200 else (0, False, 0)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        tokens, ok, chunks = 0, False, 0
        data += f"\n[client: {type(exc).__name__}: {exc}]".encode()
    if not ok:
        print(f"failed stream, its last bytes: {bytes(data[-300:])!r}", file=sys.stderr, flush=True)
    return tokens, ok, chunks


async def open_connections(session: aiohttp.ClientSession, url: str, n: int) -> None:
    """Leave `n` kept-alive connections to the server in the session's pool (n requests at once open n)."""
    async def one() -> None:
        async with session.get(url + "/health") as response:
            await response.read()

    await asyncio.gather(*(one() for _ in range(n)))


async def http_run(url: str, model: str, prompts: list[list[int]], output_tokens: int,
                   start_at: float | None = None, warm: bool = True) -> tuple:
    """(start, end) wall-clock times, output tokens, failed requests, text chunks and per-request
    (sent, headers, first bytes, end) times of all prompts sent at once. `warm`: over connections opened before the
    clock starts, as a load balancer or gateway keeps them (the server's cost is the streaming, not TCP set-up)."""
    connector = aiohttp.TCPConnector(limit=0)
    times: list[tuple[float, float, float, float]] = []
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=3600)) as session:
        if warm:
            await open_connections(session, url, len(prompts))
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.time()))
        start = time.time()
        results = await asyncio.gather(*(stream_tokens(session, url, completion_body(model, p, output_tokens), times)
                                         for p in prompts))
        end = time.time()
    return (start, end, sum(r[0] for r in results), sum(not r[1] for r in results), sum(r[2] for r in results),
            times)


CLIENT_CORES: set[int] = set()  # where client processes run when the server is pinned (--pin-server-cores)
WARM_CONNECTIONS = [True]  # --cold-connections sets it False


def split_cores(physical: int) -> tuple[set[int], set[int]]:
    """(server CPUs, client CPUs): every hardware thread of the first `physical` cores for the server, the CPUs of
    all other cores for the clients, so that no client runs on a hyperthread sibling of the engine's core."""
    cores: dict[str, set[int]] = {}
    for cpu in sorted(os.sched_getaffinity(0)):
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        key = siblings.read_text().strip() if siblings.exists() else str(cpu)  # unknown topology: one CPU a core
        cores.setdefault(key, set()).add(cpu)
    groups = sorted(cores.values(), key=min)
    if physical >= len(groups):
        raise ValueError(f"--pin-server-cores {physical}: this machine has {len(groups)} cores, leave some to clients")
    server = set().union(*groups[:physical])
    return server, set().union(*groups[physical:])


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of process `pid` onto `cores` (Linux affinity is per thread)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cores)


def _client_process(url: str, model: str, prompts: list[list[int]], output_tokens: int, start_at: float,
                    cores: set[int], warm: bool):
    if cores:
        os.sched_setaffinity(0, cores)
    return asyncio.run(http_run(url, model, prompts, output_tokens, start_at, warm))


_POOLS: dict[int, object] = {}  # client processes, started once and kept for every run


def client_pool(procs: int):
    """`procs` client processes, spawned and importing aiohttp once (then a run starts within a second, so the GPU
    has not idled for seconds before it, as it has not before an offline run)."""
    if procs not in _POOLS:
        pool = multiprocessing.get_context("spawn").Pool(procs)
        pool.map(time.sleep, [0.5] * procs)  # every worker up and imported
        atexit.register(pool.terminate)
        _POOLS[procs] = pool
    return _POOLS[procs]


def http_load(url: str, model: str, prompts: list[list[int]], output_tokens: int, procs: int):
    """(start, end) wall-clock times, output tokens, failures, text chunks and per-request times, with the requests
    spread over `procs` client processes that start together (so the client's SSE parsing is not what limits the
    measurement)."""
    warm = WARM_CONNECTIONS[0]
    if procs == 1:
        return asyncio.run(http_run(url, model, prompts, output_tokens, warm=warm))
    pool = client_pool(procs)
    start_at = time.time() + 1.0  # every worker has its task (each sleeps until then) and its connections open
    parts = pool.starmap(_client_process, [(url, model, prompts[i::procs], output_tokens, start_at,
                                            CLIENT_CORES, warm) for i in range(procs)], chunksize=1)
    return (min(p[0] for p in parts), max(p[1] for p in parts), *(sum(p[i] for p in parts) for i in (2, 3, 4)),
            [t for p in parts for t in p[5]])


def spread(times: list[tuple[float, float, float, float]], start: float) -> dict:
    """When the requests were sent, got their response headers (the server admitted them), got their first bytes
    (first token) and ended, in ms after the run's start (first / last)."""
    ms = lambda xs: [round(1000 * (min(xs) - start), 1), round(1000 * (max(xs) - start), 1)]  # noqa: E731
    return {"sent_ms": ms([t[0] for t in times]), "headers_ms": ms([t[1] for t in times]),
            "first_bytes_ms": ms([t[2] for t in times]), "ended_ms": ms([t[3] for t in times])}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_processes(pid: int) -> dict[str, int]:
    """The `shoal serve` process and its children by role: parent, engine (the engine child), resource_tracker."""
    found = {"parent": pid}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in map(int, (task / "children").read_text().split()):
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            found["resource_tracker" if b"resource_tracker" in cmdline else "engine"] = child
    return found


def offline_tok_s(llm, prompts, params, in_thread: bool, steps: list | None = None) -> float:
    """LLM.generate output tokens/s, called from this thread or from a worker thread (as the server's engine runs);
    appends (engine steps, wall seconds) to `steps` when given."""
    box = {}

    def run() -> None:
        start, before, waited = time.perf_counter(), llm.engine.steps_total, llm.engine.device_wait_seconds_total
        outputs = llm.generate(prompts, params)
        wall = time.perf_counter() - start
        box["tok_s"] = sum(len(o.token_ids) for o in outputs) / wall
        if steps is not None:
            steps.append((llm.engine.steps_total - before, wall, llm.engine.device_wait_seconds_total - waited))

    if in_thread:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
    else:
        run()
    return box["tok_s"]


def shaped_model_dir(shape: str, tokenizer_dir: Path, root: Path) -> Path:
    """A folder with one of bench/engine_throughput.py's model shapes (random weights: --load-format dummy) and the
    tokenizer of `tokenizer_dir`, its vocabulary size and special tokens taken over so every sampled id decodes."""
    import shutil

    from engine_throughput import SHAPES

    base = json.loads((tokenizer_dir / "config.json").read_text())
    config = SHAPES[shape] | {key: base[key] for key in ("vocab_size", "bos_token_id", "eos_token_id")}
    path = root / f"{shape}-shape"
    path.mkdir(parents=True, exist_ok=True)
    for name in tokenizer_dir.iterdir():
        if name.name.startswith(("tokenizer", "chat_template", "generation_config")):
            shutil.copy(name, path / name.name)
    (path / "config.json").write_text(json.dumps(config, indent=1))
    return path


def offline_runs(llm, prompts, params, skip_main: bool) -> dict:
    """LLM.generate from the main thread (unless skipped), from a worker thread, and from a worker thread with one
    torch CPU thread (as the server's engine child steps on CUDA)."""
    import torch

    main = None if skip_main else offline_tok_s(llm, prompts, params, in_thread=False)
    steps: list = []
    thread = offline_tok_s(llm, prompts, params, in_thread=True, steps=steps)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    one = offline_tok_s(llm, prompts, params, in_thread=True, steps=steps)
    torch.set_num_threads(threads)
    return {"offline_tok_s": main and round(main, 1), "offline_thread_tok_s": round(thread, 1),
            "offline_thread_1cpu_tok_s": round(one, 1),
            # (steps, ms per step, ms per step waiting for the device) of the two worker-thread runs
            "offline_steps": [[n, round(1000 * wall / n, 3), round(1000 * wait / n, 3)] for n, wall, wait in steps]}


def online_run(server, server_pids: dict[str, int], model: str, prompts, args, windows: list) -> dict:
    """All prompts at once as streams over HTTP; appends the run's (start, end) to `windows` (for the trace)."""
    cpu_before = {role: cpu_seconds(pid) for role, pid in server_pids.items()}
    start, end, tokens, failed, chunks, times = http_load(server.url, model, prompts, args.output_tokens,
                                                          args.client_procs)
    windows.append((start, end))
    return {
        "http_tok_s": round(tokens / (end - start), 1), "http_tokens": tokens, "http_failed": failed,
        # above 1 when the server coalesced outputs that came while a stream was busy
        "tokens_per_chunk": round(tokens / max(chunks, 1), 2),
        # CPU seconds of the server's processes (HTTP parent, engine child) over the HTTP run, and its wall
        "server_cpu_s": {role: round(cpu_seconds(pid) - cpu_before[role], 3) for role, pid in server_pids.items()},
        "http_wall_s": round(end - start, 3), "http_times": spread(times, start),
    }


def work_started(row: dict) -> float:
    """When an iteration of the engine child's loop had work: its start, or when the command it waited for came."""
    return row["wall_start"] + row["idle_s"]


def in_window(rows: list[dict], start: float, end: float) -> list[dict]:
    """The iterations that worked for a run: an idle iteration belongs to the run whose first command woke it."""
    return [r for r in rows if start <= work_started(r) <= end]


def trace_summary(rows: list[dict], start: float, full: int) -> dict:
    """The engine child's loop over one HTTP run (`in_window`'s rows): steps, ms per iteration and its parts, the
    host's share of a step (what it spent not waiting for the device) and how the batch filled."""
    if not rows:
        return {"steps": 0}
    mean_ms = lambda key: round(1000 * statistics.fmean(r[key] for r in rows), 4)  # noqa: E731
    host = sorted(r["commands_s"] + r["step_s"] - r["device_wait_s"] + r["send_s"] for r in rows)
    pct = lambda q: round(1000 * host[min(len(host) - 1, int(q * len(host)))], 4)  # noqa: E731
    full_at = next((work_started(r) for r in rows if r["num_running"] >= full), None)
    return {
        "steps": len(rows),
        "ms_per_iteration": round(1000 * (work_started(rows[-1]) - work_started(rows[0])) / max(len(rows) - 1, 1), 4),
        "idle_ms": mean_ms("idle_s"), "commands_ms": mean_ms("commands_s"), "step_ms": mean_ms("step_s"),
        "device_wait_ms": mean_ms("device_wait_s"), "send_ms": mean_ms("send_s"),
        "step_ms_p50": round(1000 * statistics.median(r["step_s"] for r in rows), 4),
        # host work per iteration (commands + step - device wait + send): p50 / p90 / p99 / max, ms
        "host_ms_pcts": [pct(0.5), pct(0.9), pct(0.99), round(1000 * host[-1], 4)],
        "host_bound_steps": sum(r["device_wait_s"] < 20e-6 for r in rows),  # the device waited for the host
        "steps_at_full_batch": sum(r["num_running"] >= full for r in rows),
        "first_step_ms": round(1000 * (work_started(rows[0]) - start), 1),
        "full_batch_ms": full_at and round(1000 * (full_at - start), 1),
        "last_step_ms": round(1000 * (work_started(rows[-1]) - start), 1),
    }


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
    parser.add_argument("--trace-dir", type=Path, default=None,
                        help="record the engine child's loop (SHOAL_ENGINE_TRACE) and summarise it per HTTP run: "
                             "steps, time per step and its parts, how long the batch took to fill")
    parser.add_argument("--pin-server-cores", type=int, default=0,
                        help="run the server's processes and the offline engine on the first N physical cores (all "
                             "their hardware threads) and the client processes on the other cores, as when clients "
                             "are other machines (0: no pinning)")
    parser.add_argument("--profile-offline", type=Path, default=None,
                        help="after the repeats, profile one offline run (cProfile) and write the top functions here")
    parser.add_argument("--server-src", type=Path, default=None,
                        help="serve with the `shoal` package under this folder (e.g. an older commit's src, to read a "
                             "change against its before in the same visit); the offline engine stays this tree's")
    parser.add_argument("--cold-connections", action="store_true",
                        help="open each client's connections inside the timed window (default: opened before it, "
                             "kept alive, as a gateway keeps them)")
    parser.add_argument("--shape", default=None,
                        help="serve a model shape of bench/engine_throughput.py (e.g. qwen3-0.6b) with random weights "
                             "and --model-dir's tokenizer and vocabulary, instead of --model-dir's own model")
    parser.add_argument("--out", type=Path, default=Path("bench/results/serve_overhead.json"))
    args = parser.parse_args()

    import torch

    from shoal.engine import LLM, SamplingParams
    from shoal.engine.model_prepare import prepare
    from shoal.engine.server.launcher import ServerProcess

    model_dir = args.model_dir or prepare("smollm2")
    if args.shape:
        import tempfile

        model_dir = shaped_model_dir(args.shape, model_dir, Path(tempfile.mkdtemp(prefix="shoal-shape-")))
        args.load_format = "dummy"
    WARM_CONNECTIONS[0] = not args.cold_connections
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
    runs, windows = [], []
    env = {} if args.server_src is None else {"PYTHONPATH": str(args.server_src.resolve())}
    if args.trace_dir is not None:
        from shoal.engine.server.step_trace import ENV

        args.trace_dir.mkdir(parents=True, exist_ok=True)
        env[ENV] = str((args.trace_dir / "engine_trace.json").resolve())
    with ServerProcess(flags, env=env) as server:
        model = model_dir.name
        http_load(server.url, model, prompts[:4], 8, 1)  # warm-up
        for _ in range(args.warmup_runs):
            offline_tok_s(llm, prompts, params, in_thread=True)
            http_load(server.url, model, prompts, args.output_tokens, args.client_procs)
        server_pids = server_processes(server.proc.pid)
        if args.pin_server_cores:
            server_cores, client_cores = split_cores(args.pin_server_cores)
            CLIENT_CORES.update(client_cores)
            print(f"server and offline engine on CPUs {sorted(server_cores)}, clients on {sorted(client_cores)}",
                  flush=True)
            for pid in server_pids.values():
                pin(pid, server_cores)
            pin(os.getpid(), server_cores)  # the offline engine steps in this process
        offline = lambda: offline_runs(llm, prompts, params, args.skip_offline_main)  # noqa: E731
        online = lambda: online_run(server, server_pids, model, prompts, args, windows)  # noqa: E731
        for repeat in range(args.repeats):
            # alternate which side goes first, so that a drift of the machine's speed favours neither
            run = offline() | online() if repeat % 2 == 0 else online() | offline()
            # against the fastest offline run of the repeat: the engine's step loop runs faster off the main thread
            # on some CPUs
            run["ratio"] = round(run["http_tok_s"] / max(run["offline_tok_s"] or 0.0, run["offline_thread_tok_s"],
                                                         run["offline_thread_1cpu_tok_s"]), 3)
            runs.append(run)
            print(f"repeat {repeat}: {json.dumps(run)}", flush=True)
    if args.profile_offline is not None:
        import cProfile
        import io
        import pstats

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        profile = cProfile.Profile()
        profile.enable()
        llm.generate(prompts, params)
        profile.disable()
        torch.set_num_threads(threads)
        text = io.StringIO()
        stats = pstats.Stats(profile, stream=text)
        stats.sort_stats("tottime").print_stats(45)
        stats.sort_stats("cumtime").print_stats(45)
        stats.print_callees(r"cuda_graphs.py:\d+\(run\)|model_runner.py:\d+\(launch\)|llm_engine.py:\d+\(_step\)")
        args.profile_offline.write_text(text.getvalue())
    if args.trace_dir is not None:
        from shoal.engine.server.step_trace import load

        rows = load(env["SHOAL_ENGINE_TRACE"])
        for run, (start, end) in zip(runs, windows):
            run["engine_child"] = trace_summary(in_window(rows, start, end), start, args.concurrency)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "config": {k: str(v) for k, v in vars(args).items()} | {"model_dir": model_dir.name},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
        "runs": runs,
        "median_ratio": round(statistics.median(r["ratio"] for r in runs), 3),
        # the medians' ratio, against the faster offline variant's median (robust to one slow or fast repeat)
        "ratio_of_medians": round(statistics.median(r["http_tok_s"] for r in runs) / max(
            statistics.median((r[key] or 0.0) for r in runs)
            for key in ("offline_tok_s", "offline_thread_tok_s", "offline_thread_1cpu_tok_s")), 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
