"""`shoal serve`: every flag can also come from the environment as SHOAL_<FLAG> (the flag wins)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ENV_PREFIX = "SHOAL_"


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# flag, type, default, help
FLAGS: tuple[tuple[str, object, object, str], ...] = (
    ("--model", Path, None, "Hugging Face model folder (config.json, safetensors, tokenizer.json)"),
    ("--host", str, "0.0.0.0", "address to listen on"),
    ("--port", int, 8000, "port to listen on (0 picks a free port; the chosen one is logged)"),
    ("--device", str, "cpu", "torch device: cpu or cuda"),
    ("--dtype", str, "float32", "weight and activation dtype: float32, bfloat16, float16"),
    ("--max-num-seqs", int, 256, "startup capacity: most requests running at once (runtime cap moves below it)"),
    ("--max-num-batched-tokens", int, 8192, "startup capacity: most tokens in one engine step"),
    ("--max-model-len", int, None, "context length (default: the model's)"),
    ("--kv-cache-tokens", int, None, "KV cache size in tokens (default: the engine's sizing)"),
    ("--block-size", int, 16, "KV cache block size in tokens"),
    ("--enable-prefix-caching", parse_bool, True, "reuse KV blocks of shared prompt prefixes (true/false)"),
    ("--served-model-name", str, None, "the OpenAI `model` name served (default: the model folder's name)"),
    ("--admin-token-file", Path, None, "file holding the bearer token of /admin routes (no file: admin disabled)"),
    ("--runtime-config-dir", Path, None, "mounted <name>-runtime ConfigMap: initial maxNumSeqs/maxNumBatchedTokens"),
    ("--drain-timeout", float, 30.0, "seconds SIGTERM waits for in-flight requests before exiting"),
    ("--max-waiting", int, 1024, "most requests waiting for a running slot; beyond it 429 with Retry-After"),
    ("--health-stall-seconds", float, 60.0, "/health fails when the busy engine made no step this long"),
    ("--load-format", str, "safetensors", "safetensors, or dummy: random weights of config.json's shapes (benchmarks)"),
    ("--stream-interval", int, 1, "tokens gathered per streamed chunk; >1 trades ITL granularity for fewer writes"),
    ("--engine-process", parse_bool, False,
     "run the engine's step loop in a child process so HTTP streaming and stepping share no GIL (true/false; "
     "meant for GPUs: on a few CPU cores the child's torch threads and the HTTP process contend)"),
    ("--admission-window-ms", float, 2.0,
     "with --engine-process: an idle engine woken by a request also admits those arriving within this many ms of "
     "each other (up to 25x it) before its first step, so a burst shares one prefill step (0: step at once)"),
    ("--log-level", str, "info", "debug, info, warning, error"),
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the OpenAI-compatible engine server",
        description="Serve one model over an OpenAI-compatible HTTP API with metrics, health, drain and "
                    "live batch limits. Every flag can also be set as SHOAL_<FLAG_NAME> in the environment.",
    )
    add_flags(parser, os.environ)
    parser.set_defaults(func=run)


def add_flags(parser: argparse.ArgumentParser, environ) -> None:
    for flag, kind, default, help_text in FLAGS:
        env = env_name(flag)
        # argparse converts string defaults with `type`, so an env value is checked like a flag value
        value = environ.get(env, default)
        parser.add_argument(flag, type=kind, default=value, help=f"{help_text} [env {env}]")


def settings_from_args(args: argparse.Namespace):
    from shoal.engine.server.settings import ServeSettings

    if args.model is None:
        raise SystemExit("shoal serve: --model (or SHOAL_MODEL) is required: a Hugging Face model folder")
    return ServeSettings(
        model=args.model, host=args.host, port=args.port, device=args.device, dtype=args.dtype,
        max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
        max_model_len=args.max_model_len, kv_cache_tokens=args.kv_cache_tokens, block_size=args.block_size,
        enable_prefix_caching=args.enable_prefix_caching, served_model_name=args.served_model_name,
        admin_token_file=args.admin_token_file, runtime_config_dir=args.runtime_config_dir,
        drain_timeout=args.drain_timeout, max_waiting=args.max_waiting,
        health_stall_seconds=args.health_stall_seconds, load_format=args.load_format,
        engine_process=args.engine_process, stream_interval=args.stream_interval,
        admission_window_ms=args.admission_window_ms,
    )


def run(args: argparse.Namespace) -> int:
    import logging

    from shoal.engine.server.serve import serve

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        raise SystemExit(f"shoal serve: {exc}") from exc
    return serve(settings)
