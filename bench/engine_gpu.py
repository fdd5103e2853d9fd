"""The engine on a GPU, in one run: greedy agreement with the CPU path, the nano-vllm protocol on the
Qwen3-0.6B and Llama-3.1-8B shapes (bench/engine_throughput.py) beside transformers' continuous
batching, and Llama-3.1-8B batch-1 decode against weight bytes / copy bandwidth.

    PYTHONPATH=src python3 bench/engine_gpu.py [--json bench/results/engine_throughput_gpu.json]

Greedy agreement: the same prompts through the CPU float32 path and through CUDA (float32 with
exact dots, bfloat16; with and without CUDA graphs); reported as the number of leading tokens
that agree. Models: SmolLM2-135M-Instruct when its GGUF package can be found, and a small random
Qwen3 saved by transformers (both engines load the same files).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import engine_throughput as et

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Water boils at", "Once upon a time, a small fish"]


def free_gpu():
    """Drop the last engine's KV pool and graphs before the next one sizes itself from free memory."""
    gc.collect()
    torch.cuda.empty_cache()


def common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def greedy_tokens(model_dir, device, dtype, prompts, max_tokens, graphs="1", async_scheduling=None):
    from shoal.engine import LLM, SamplingParams

    os.environ["SHOAL_CUDA_GRAPHS"] = graphs  # read when the model runner starts
    llm = LLM(model_dir, device=device, dtype=dtype, max_num_seqs=8, kv_cache_tokens=4096, max_model_len=2048,
              async_scheduling=async_scheduling)
    outs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True))
    del llm
    free_gpu()
    return [o.token_ids for o in outs]


def agreement(model_dir, prompts, max_tokens=32):
    ref = greedy_tokens(model_dir, "cpu", "float32", prompts, max_tokens)
    rows = {}
    # CUDA runs asynchronous scheduling by default; one row runs it synchronously for comparison.
    for label, dtype, graphs, overlap in (("cuda float32, graphs", "float32", "1", None),
                                          ("cuda float32, graphs, sync", "float32", "1", False),
                                          ("cuda bfloat16, graphs", "bfloat16", "1", None),
                                          ("cuda bfloat16, eager", "bfloat16", "0", None)):
        got = greedy_tokens(model_dir, "cuda", dtype, prompts, max_tokens, graphs, overlap)
        rows[label] = [common_prefix(a, b) for a, b in zip(got, ref)]
        print(f"  {label:<24} leading tokens equal to CPU float32 (of {max_tokens}): {rows[label]}", flush=True)
    os.environ["SHOAL_CUDA_GRAPHS"] = "1"
    return {"max_tokens": max_tokens, "prefix_agreement": rows}


def random_qwen3_dir(root):
    """A small Qwen3 (d=128, GQA 2) with transformers' random init, saved as safetensors."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    cfg = Qwen3Config(vocab_size=4096, hidden_size=512, intermediate_size=1024, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=4, head_dim=128, max_position_embeddings=4096,
                      tie_word_embeddings=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    path = Path(root) / "qwen3-small-random"
    model.save_pretrained(path)
    return path


def smollm2_dir():
    try:
        from shoal.engine.model_prepare import prepare

        return prepare("smollm2")
    except Exception as e:  # said in the output and the JSON, never hidden
        print(f"  SmolLM2 unavailable here: {e!r}", flush=True)
        return None


def nano_vllm(shape, profile=False, overlap="auto", phases=False, temperature=0.6):
    argv = ["--model-shape", shape, "--device", "cuda", "--out", os.devnull, "--async-scheduling", overlap,
            "--temperature", str(temperature)]
    argv += ["--phase-timing"] if phases else []
    if profile:  # where the host spends a step: the top of cProfile's table
        import cProfile
        import pstats

        prof = cProfile.Profile()
        result = prof.runcall(et.main, argv)
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats("shoal", 25)
        stats.print_callers("compile|method 'tensor'|torch.tensor")
    else:
        result = et.main(argv)
    free_gpu()
    print(f"  {shape} async_scheduling={overlap} T={temperature}: {result['shoal']['output_tok_s']:.0f} out tok/s, "
          f"{100 * result['roofline']['fraction']:.1f}% of roofline, phases {result['shoal']['phase_seconds']}, "
          f"Triton compiles in the timed run: {result['shoal']['triton_compiles_during_run']}",
          flush=True)
    return {"out_tok_per_s": result["shoal"]["output_tok_s"], "roofline_fraction": result["roofline"]["fraction"],
            "shoal": result["shoal"], "roofline": result["roofline"], "under_cprofile": profile,
            "async_scheduling": overlap}


def hf_compare(shape, shoal_tok_s, hf_seqs, hf_max_output):
    """transformers' generate_batch (continuous batching, paged attention) on the first hf_seqs
    prompts of the same workload, every output hf_max_output tokens (the full 256 x ~560-token
    protocol would take it many minutes)."""
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    cfg = et.SHAPES[shape]
    prompts, _ = et.make_workload(256, 100, 1024, 100, 1024, cfg["vocab_size"], 0)
    prompts = prompts[:hf_seqs]
    try:
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "config.json").write_text(json.dumps(cfg))
            config = AutoConfig.from_pretrained(d)
        with torch.device("cuda"):  # random init on the card: an 8B model initialised on the host takes minutes
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="paged|sdpa")
        model = model.eval()
        gen = GenerationConfig(do_sample=True, temperature=0.6, max_new_tokens=hf_max_output, eos_token_id=None,
                               pad_token_id=0)
        with torch.no_grad():
            model.generate_batch(inputs=[prompts[0][:16]], generation_config=gen)  # warm-up
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            outs = model.generate_batch(inputs=prompts, generation_config=gen)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
        tokens = sum(len(o.generated_tokens) for o in outs.values())
    except Exception as e:  # reported in the JSON, not hidden
        print(f"  transformers generate_batch failed: {e!r}", flush=True)
        return {"hf_out_tok_per_s": None, "ratio_vs_hf": None, "hf_error": repr(e)[:500]}
    del model
    free_gpu()
    tok_s = tokens / seconds
    print(f"  transformers generate_batch: {tokens} tokens in {seconds:.1f}s = {tok_s:.1f} out tok/s", flush=True)
    return {"hf_out_tok_per_s": tok_s, "ratio_vs_hf": shoal_tok_s / tok_s,
            "hf": {"num_seqs": hf_seqs, "max_new_tokens": hf_max_output, "output_tokens": tokens,
                   "seconds": seconds, "attn_implementation": "paged|sdpa",
                   "transformers": transformers.__version__}}


def batch1_decode(shape="llama-3.1-8b", prompt_len=128, new_tokens=256, async_scheduling=None):
    """Seconds per generated token of one sequence (after its first token), against the time to read
    every weight that a step streams (the embedding table is only gathered) at copy bandwidth."""
    from shoal.engine import LLM, SamplingParams

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "config.json").write_text(json.dumps(et.SHAPES[shape]))
        llm = LLM(d, device="cuda", dtype="bfloat16", load_format="dummy", max_num_seqs=8, kv_cache_tokens=8192,
                  max_model_len=4096, async_scheduling=async_scheduling)
        params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True)
        llm.generate([[7] * 16], SamplingParams(max_tokens=4))  # warm-up
        out = llm.generate([list(range(1, prompt_len + 1))], params)[0]
        m = out.metrics
        per_token = (m.finished_time - m.first_token_time) / (len(out.token_ids) - 1)
        model = llm.engine.runner.model
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        weights -= model.embed_tokens.weight.numel() * model.embed_tokens.weight.element_size()
        del llm
    free_gpu()
    bw = et.copy_bandwidth("cuda", 1 << 30)
    floor = weights / bw
    return {"ms_per_token": per_token * 1e3, "weight_bytes": weights, "copy_GBps": bw / 1e9,
            "floor_ms": floor * 1e3, "ratio_to_floor": per_token / floor, "async_scheduling": async_scheduling}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default="bench/results/engine_throughput_gpu.json", help="every measurement")
    ap.add_argument("--summary", default="bench/results/engine_throughput.json",
                    help="issue 5's summary: per model shape out_tok_per_s, roofline_fraction, hf_out_tok_per_s, "
                         "ratio_vs_hf, plus card and versions")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: " + ",".join(PARTS))
    ap.add_argument("--repeat", type=int, default=1, help="runs of each nano-vllm shape")
    ap.add_argument("--only", default="", help="comma list of the parts to run (and 'profile' to profile qwen)")
    ap.add_argument("--phases", action="store_true", help="time host and device phases of every nano-vllm run")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if args.only:
        skip |= set(PARTS) - set(args.only.split(","))
    import transformers
    import triton

    result = {"card": torch.cuda.get_device_name(0), "date": time.strftime("%Y-%m-%d", time.gmtime()),
              "versions": {"torch": torch.__version__, "triton": triton.__version__,
                           "transformers": transformers.__version__},
              "command": " ".join(["PYTHONPATH=src python3 bench/engine_gpu.py", *sys.argv[1:]])}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():  # after every part, so a run cut short keeps what it measured
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        Path(args.summary).write_text(json.dumps(summary(result), indent=2) + "\n")

    if "coldprofile" in args.only.split(","):  # the first (cold) asynchronous run of the process, profiled
        result["coldprofile"] = nano_vllm("qwen3-0.6b", profile=True, overlap="on", phases=True)
        save()
    if "diag" in args.only.split(","):  # where asynchronous scheduling's time goes, greedy and sampled, beside synchronous
        print("== diagnostics: phases of qwen3-0.6b runs", flush=True)
        result["diag"] = [nano_vllm("qwen3-0.6b", overlap=o, phases=True, temperature=t)
                          for o, t in (("on", 0.6), ("on", 0.0), ("off", 0.6), ("on", 0.6))]
        save()
    if "agree" not in skip:
        print("== greedy agreement with the CPU float32 path", flush=True)
        with tempfile.TemporaryDirectory() as root:
            result["agreement_random_qwen3"] = agreement(random_qwen3_dir(root), [[5, 9, 100, 7, 3000, 12],
                                                         [11, 12, 13, 14] * 10, [400] * 3])
        smol = smollm2_dir()
        result["agreement_smollm2"] = agreement(smol, PROMPTS) if smol else "SmolLM2 GGUF not available on this machine"
        save()
    for shape, key in (("qwen3-0.6b", "qwen"), ("llama-3.1-8b", "llama")):
        if key not in skip:
            print(f"== nano-vllm protocol, {shape}", flush=True)
            result[shape] = nano_vllm(shape, profile="profile" in args.only, phases=args.phases)
            for _ in range(args.repeat - 1):  # the spread between identical runs, reported beside the first
                again = nano_vllm(shape, phases=args.phases)
                result[shape].setdefault("repeats_out_tok_per_s", []).append(again["out_tok_per_s"])
            save()
        if f"{key}-sync" not in skip:  # the same run with host and device in turn, as before async scheduling
            result[f"{shape}_sync"] = nano_vllm(shape, overlap="off", phases=args.phases)
            save()
        fast, slow = result.get(shape, {}).get("out_tok_per_s"), result.get(f"{shape}_sync", {}).get("out_tok_per_s")
        if key == "qwen" and fast and slow and fast < slow:  # asynchronous lost: where does its host time go?
            print("== asynchronous scheduling lost to synchronous: profiling it", flush=True)
            result["qwen3-0.6b_async_profiled"] = nano_vllm(shape, profile=True)
            save()
    if "batch1" not in skip:
        print("== Llama-3.1-8B shape, batch-1 decode", flush=True)
        for key, overlap in (("llama-3.1-8b_batch1", None), ("llama-3.1-8b_batch1_sync", False)):
            result[key] = batch1_decode(async_scheduling=overlap)
            print(f"  {key}: {json.dumps(result[key])}", flush=True)
        save()
    for shape, key in (("qwen3-0.6b", "hf"), ("llama-3.1-8b", "hf-llama")):
        if key not in skip:
            print(f"== transformers continuous batching, {shape} shape", flush=True)
            row = result.setdefault(shape, {})
            row.update(hf_compare(shape, row.get("out_tok_per_s") or float("nan"), 64, 128))
            save()
    print("\n== summary")
    for shape in ("qwen3-0.6b", "qwen3-0.6b_sync", "llama-3.1-8b", "llama-3.1-8b_sync"):
        r = result.get(shape)
        if r and "out_tok_per_s" in r:
            hf = r.get("hf_out_tok_per_s")
            print(f"{shape:>18}: {r['out_tok_per_s']:.0f} out tok/s {r.get('repeats_out_tok_per_s', '')}, "
                  f"{100 * r['roofline_fraction']:.1f}% of roofline, HF {hf and round(hf, 1)} tok/s, "
                  f"ratio {r.get('ratio_vs_hf') and round(r['ratio_vs_hf'], 1)}")
    for key in ("llama-3.1-8b_batch1", "llama-3.1-8b_batch1_sync"):
        b = result.get(key)
        if b:
            print(f"{key}: {b['ms_per_token']:.2f} ms/token vs floor {b['floor_ms']:.2f} ms "
                  f"({b['ratio_to_floor']:.3f}x)")


PARTS = ("agree", "qwen", "qwen-sync", "llama", "llama-sync", "batch1", "hf", "hf-llama")


def summary(result: dict) -> dict:
    """The fields issue 5 asks for, per model shape, from the full result."""
    out = {k: result[k] for k in ("card", "date", "versions", "command")}
    for shape in ("qwen3-0.6b", "llama-3.1-8b"):
        r = result.get(shape)
        if r and "out_tok_per_s" in r:
            out[shape] = {k: r.get(k) for k in ("out_tok_per_s", "roofline_fraction", "hf_out_tok_per_s",
                                                 "ratio_vs_hf")}
            out[shape]["hf_workload"] = "first 64 prompts, 128 new tokens each" if r.get("hf") else None
    b = result.get("llama-3.1-8b_batch1")
    if b:
        out["llama-3.1-8b_batch1"] = {k: b[k] for k in ("ms_per_token", "floor_ms", "ratio_to_floor")}
    return out


if __name__ == "__main__":
    main()
