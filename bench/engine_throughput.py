"""Engine offline throughput, DESIGN.md's "nano-vllm protocol".

N sequences with prompt and output lengths each uniform in [min, max] (default [100, 1024]), random
token ids, ignore EOS, temperature 0.6; output tokens / wall seconds including prefill. Random
weights from the model shape's config (speed does not depend on weight values). Reports the
fraction of the roofline (bytes of weights read per step + KV read per generated token, over the
copy bandwidth measured in the same run) and, with --hf-compare, the ratio to Hugging Face
transformers' continuous batching on the same workload, weights shape and device.

    python bench/engine_throughput.py --model-shape qwen3-0.6b --num-seqs 256 --device cuda
    python bench/engine_throughput.py --model-shape tiny --num-seqs 16 --max-input 64 --max-output 64
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import torch

SHAPES = {
    "qwen3-0.6b": {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 1024,
        "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
        "head_dim": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 40960,
        "tie_word_embeddings": True, "attention_bias": False, "bos_token_id": 151643, "eos_token_id": 151645,
    },
    "llama-3.1-8b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 128, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 131072,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
        "tie_word_embeddings": False, "attention_bias": False, "bos_token_id": 128000, "eos_token_id": 128001,
    },
    "smollm2-135m": {  # the model the local fleet serves on CPU
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
        "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "head_dim": 64, "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "max_position_embeddings": 8192,
        "tie_word_embeddings": True, "attention_bias": False, "bos_token_id": 1, "eos_token_id": 2,
    },
    "tiny": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512, "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 4096,
        "tie_word_embeddings": False, "attention_bias": False, "bos_token_id": 1, "eos_token_id": 2,
    },
}


def make_workload(num_seqs, min_in, max_in, min_out, max_out, vocab, seed):
    rng = random.Random(seed)
    prompts = [[rng.randrange(vocab) for _ in range(rng.randint(min_in, max_in))] for _ in range(num_seqs)]
    outputs = [rng.randint(min_out, max_out) for _ in range(num_seqs)]
    return prompts, outputs


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def copy_bandwidth(device: str, nbytes: int = 256 << 20) -> float:
    """Bytes/s of a device-to-device copy, counting bytes read plus bytes written (median).

    On CUDA: 1 GiB timed with events (a host clock around a 256 MB copy reads 5-10% low, which
    flatters the roofline fraction)."""
    if device.startswith("cuda"):
        nbytes = max(nbytes, 1 << 30)
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    times = []
    for _ in range(11):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            dst.copy_(src)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            dst.copy_(src)
            times.append(time.perf_counter() - t0)
    return 2 * nbytes / sorted(times[1:])[5]


def run_shoal(model_dir, args, prompts, outputs):
    from shoal.engine import LLM, SamplingParams

    llm = LLM(
        model_dir, device=args.device, dtype=args.dtype, load_format="dummy", max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens, kv_cache_tokens=args.kv_cache_tokens,
        max_model_len=args.max_input + args.max_output, async_scheduling=args.async_scheduling,
    )
    params = [SamplingParams(temperature=args.temperature, max_tokens=n, ignore_eos=True) for n in outputs]
    # Warm-up, not timed: Triton compiles each kernel variant on first use (about a second each), so a few
    # short requests of the workload's kind go through prefill, mixed and decode steps first.
    warm = [p[: 16 + 29 * i] for i, p in enumerate(prompts[:32])]
    llm.generate(warm, SamplingParams(temperature=0.6, max_tokens=4, ignore_eos=True))
    engine = llm.engine
    steps0 = engine.steps_total
    phases = _time_phases(engine) if args.phase_timing else None
    compiled_before = _triton_cache_entries()
    sync(args.device)
    t0 = time.perf_counter()
    results = llm.generate(prompts, params)
    sync(args.device)
    seconds = time.perf_counter() - t0
    compiled_during = _triton_cache_entries() - compiled_before
    tokens = sum(len(r.token_ids) for r in results)
    assert [len(r.token_ids) for r in results] == outputs, "a sequence stopped early"
    runner = engine.runner
    weights = sum(p.numel() * p.element_size() for p in runner.model.parameters())
    if runner.model.lm_head is not None:  # an untied embedding is only gathered from, not streamed
        weights -= runner.model.embed_tokens.weight.numel() * runner.model.embed_tokens.weight.element_size()
    kv_read = sum(p * n + n * (n - 1) // 2 for p, n in zip(map(len, prompts), outputs)) * runner.kv_bytes_per_token
    return {
        "seconds": seconds, "output_tokens": tokens, "output_tok_s": tokens / seconds,
        "steps": engine.steps_total - steps0, "preemptions": engine.num_preemptions_total,
        "kv_cache_tokens": runner.num_blocks * runner.block_size,
        "weight_bytes_per_step": weights, "kv_bytes_read": kv_read,
        "phase_seconds": phases() if phases else None,
        "triton_compiles_during_run": compiled_during,  # each costs about a second of the timed run
    }, llm


def _triton_cache_entries() -> int:
    import os

    root = Path(os.environ.get("TRITON_CACHE_DIR") or Path.home() / ".triton" / "cache")
    return sum(1 for _ in root.iterdir()) if root.is_dir() else 0


def _time_phases(engine):
    """Wrap the engine's launch and read-back (diagnostics): host seconds in each, and the device seconds
    between the start and the end of each launched step's work (CUDA events). Returns a reader."""
    runner = engine.runner
    launch, resolve = runner.launch, engine._resolve
    acc = {"launch_host": 0.0, "resolve_host": 0.0}
    marks = []

    def timed_launch(*a, **k):
        t = time.perf_counter()
        start = torch.cuda.Event(enable_timing=True)
        start.record()
        out = launch(*a, **k)
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        marks.append((start, end))
        acc["launch_host"] += time.perf_counter() - t
        return out

    def timed_resolve(*a, **k):
        t = time.perf_counter()
        out = resolve(*a, **k)
        acc["resolve_host"] += time.perf_counter() - t
        return out

    runner.launch, engine._resolve = timed_launch, timed_resolve

    def read():
        torch.cuda.synchronize()
        device = [s.elapsed_time(e) / 1e3 for s, e in marks]
        gaps = [marks[i][1].elapsed_time(marks[i + 1][0]) / 1e3 for i in range(len(marks) - 1)]
        return {**acc, "device_in_steps": sum(device), "device_between_steps": sum(gaps), "steps": len(marks)}

    return read


def run_hf(model_dir, args, prompts, outputs):
    """transformers' continuous batching (the manager behind generate_batch), one request per sequence."""
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    config = AutoConfig.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, args.dtype)).to(args.device).eval()
    gen = GenerationConfig(do_sample=True, temperature=0.6, eos_token_id=None, pad_token_id=0, max_new_tokens=max(outputs))
    with torch.inference_mode():
        # Timed like ours: from handing over the requests to the last result; setting up the manager
        # (cache allocation, warm-up) is startup, as building our LLM is.
        with model.continuous_batching_context_manager(generation_config=gen, block=True, timeout=5,
                                                       **_hf_cache_size(prompts, outputs)) as manager:
            sync(args.device)
            t0 = time.perf_counter()
            ids = [manager.add_request(p, max_new_tokens=n) for p, n in zip(prompts, outputs)]
            done = {}
            while len(done) < len(ids):
                result = manager.get_result(timeout=1)
                if result is not None and result.is_finished():
                    done[result.request_id] = len(result.generated_tokens)
                elif result is None and not manager.is_running():
                    raise RuntimeError("transformers' continuous batching stopped unexpectedly")
            sync(args.device)
            seconds = time.perf_counter() - t0
    tokens = sum(done.values())
    return {"seconds": seconds, "output_tokens": tokens, "output_tok_s": tokens / seconds,
            "transformers": transformers.__version__}


def _hf_cache_size(prompts, outputs) -> dict:
    """A paged cache that holds the whole workload, no more: left to itself transformers sizes it from free memory
    (on CPU, 90% of the host's RAM: 14 GB touched in the CI smoke run)."""
    try:
        from transformers.generation.configuration_utils import ContinuousBatchingConfig
    except ImportError:  # older transformers: its default sizing
        return {}
    page = ContinuousBatchingConfig().page_size
    blocks = sum(-(-(len(p) + n) // page) for p, n in zip(prompts, outputs)) + len(prompts)
    return {"continuous_batching_config": ContinuousBatchingConfig(num_blocks=blocks)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-shape", choices=sorted(SHAPES), default="qwen3-0.6b")
    ap.add_argument("--num-seqs", type=int, default=256)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--min-input", type=int, default=100)
    ap.add_argument("--max-input", type=int, default=1024)
    ap.add_argument("--min-output", type=int, default=100)
    ap.add_argument("--max-output", type=int, default=1024)
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--max-num-batched-tokens", type=int, default=8192)
    ap.add_argument("--kv-cache-tokens", type=int, default=None)
    ap.add_argument("--cpu-threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--hf-compare", action="store_true", help="also run transformers' continuous batching")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=0.6, help="the protocol's 0.6; 0 = greedy (diagnostics)")
    ap.add_argument("--phase-timing", action="store_true", help="CUDA: host and device seconds per phase")
    ap.add_argument("--async-scheduling", choices=["auto", "on", "off"], default="auto",
                    help="overlap host work with the device (auto: on for CUDA)")
    ap.add_argument("--out", default=None, help="default: bench/results/engine_throughput_<shape>_<device>.json "
                    "(engine_throughput.json itself is the GPU summary that bench/engine_gpu.py writes)")
    args = ap.parse_args(argv)
    args.async_scheduling = {"auto": None, "on": True, "off": False}[args.async_scheduling]
    if args.out is None:
        device_kind = "gpu" if args.device.startswith("cuda") else "cpu"
        args.out = str(Path(__file__).parent / "results" / f"engine_throughput_{args.model_shape}_{device_kind}.json")
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)  # both engines run in this process, so both get it
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    args.min_input, args.min_output = min(args.min_input, args.max_input), min(args.min_output, args.max_output)
    shape = SHAPES[args.model_shape]
    prompts, outputs = make_workload(
        args.num_seqs, args.min_input, args.max_input, args.min_output, args.max_output, shape["vocab_size"], args.seed
    )
    with tempfile.TemporaryDirectory() as model_dir:
        (Path(model_dir) / "config.json").write_text(json.dumps(shape))
        shoal, llm = run_shoal(model_dir, args, prompts, outputs)
        del llm  # free its KV cache before the peer runs
        bandwidth = copy_bandwidth(args.device)
        required = shoal["steps"] * shoal["weight_bytes_per_step"] + shoal["kv_bytes_read"]
        roofline = {"copy_bandwidth_GBps": bandwidth / 1e9, "required_bytes": required,
                    "roofline_seconds": required / bandwidth, "fraction": required / bandwidth / shoal["seconds"]}
        hf = None
        if args.hf_compare:
            try:
                hf = run_hf(model_dir, args, prompts, outputs)
            except Exception as exc:  # recorded, not hidden: the peer's API moves between versions
                hf = {"error": f"{type(exc).__name__}: {exc}"}
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": args.device, "device_name": _device_name(args.device), "torch": torch.__version__,
        "model_shape": args.model_shape, "dtype": args.dtype, "num_seqs": args.num_seqs,
        "input_range": [args.min_input, args.max_input], "output_range": [args.min_output, args.max_output],
        "cpu_threads": torch.get_num_threads(), "async_scheduling": args.async_scheduling,
        "temperature": args.temperature, "shoal": shoal, "roofline": roofline, "hf": hf,
        "ratio_to_hf": shoal["output_tok_s"] / hf["output_tok_s"] if hf and "error" not in hf else None,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    line = (f"{args.model_shape} {args.dtype} on {result['device_name']}: {args.num_seqs} seqs, "
            f"{shoal['output_tokens']} output tokens in {shoal['seconds']:.2f}s = {shoal['output_tok_s']:.1f} tok/s; "
            f"roofline {roofline['roofline_seconds']:.2f}s at {roofline['copy_bandwidth_GBps']:.1f} GB/s copy "
            f"-> {100 * roofline['fraction']:.1f}% of roofline")
    if hf and "error" in hf:
        line += f"; transformers CB failed: {hf['error']}"
    elif hf:
        line += f"; transformers CB {hf['output_tok_s']:.1f} tok/s -> {result['ratio_to_hf']:.2f}x"
    print(line)
    return result


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU ({torch.get_num_threads()} threads)"


if __name__ == "__main__":
    main()
