"""Per-token host cost of IncrementalDetokenizer.add: the library decode (reference) against the byte table (fast).

Issue 4's decode step is host-bound, and every stream's detokenizer runs once per generated token. This feeds
S streams x T tokens, one token per add() as the engine does, round-robin over the streams as a decode step
does, for two workloads: ids drawn uniformly from the whole vocabulary (many partial UTF-8 tokens and special
tokens), and the real tokens of the repository's docs (English, code, some multi-byte characters). Rounds
alternate reference / fast on the same machine; CPU time (process_time) per add, the minimum and median over the
rounds. Checks first that both give the same text for every stream.

  .venv/bin/python bench/detokenize_cost.py [--streams 64 --tokens 512 --rounds 7 --stop]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from pathlib import Path

import tokenizers

from shoal.engine.detokenizer import IncrementalDetokenizer
from shoal.engine.model_prepare import prepare
from shoal.engine.tokenizer import Tokenizer

DOCS = Path(__file__).resolve().parent.parent / "docs"
MULTIBYTE = " Ünïcödé: naïve café, 日本語のテキスト, Ελληνικά, emoji 🎉🚀, math ∑∫√. "


def workloads(tok: Tokenizer, streams: int, tokens: int, seed: int) -> dict[str, list[list[int]]]:
    rng = random.Random(seed)
    text = MULTIBYTE.join(p.read_text() for p in sorted(DOCS.glob("*.md")))
    ids = tok.encode(text)
    if len(ids) < 2 * tokens:
        raise SystemExit(f"--tokens {tokens}: the docs give only {len(ids)} tokens; pass at most {len(ids) // 2}")
    starts = [rng.randrange(len(ids) - tokens) for _ in range(streams)]
    return {
        "random ids": [[rng.randrange(tok.vocab_size) for _ in range(tokens)] for _ in range(streams)],
        "docs text": [ids[s : s + tokens] for s in starts],
    }


def run(tok: Tokenizer, streams: list[list[int]], reference: bool, stop: list[str]) -> tuple[float, list[str]]:
    """CPU seconds per add() over all streams, and each stream's final text."""
    prompt = [tok.eos_token_id or 0]
    detoks = [IncrementalDetokenizer(tok, prompt, stop, reference=reference) for _ in streams]
    adds = [d.add for d in detoks]
    steps = list(zip(*streams))  # steps[j][i]: token j of stream i
    t0 = time.process_time()
    for step in steps:
        for add, token in zip(adds, step):
            add([token])
    seconds = time.process_time() - t0
    return seconds / (len(streams) * len(steps)), [d.visible_text(True) for d in detoks]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stop", action="store_true", help="give every stream two stop strings that never match")
    args = ap.parse_args()
    tok = Tokenizer(prepare("smollm2"))
    t0 = time.perf_counter()
    if tok.byte_table is None:
        raise SystemExit("the SmolLM2 tokenizer did not get a byte table: nothing to compare")
    build_s = time.perf_counter() - t0
    stop = ["\n\n\n\n", "<<END>>"] if args.stop else []
    print(f"CPU {cpu_name()}, Python {platform.python_version()}, tokenizers {tokenizers.__version__}; "
          f"{args.streams} streams x {args.tokens} tokens, one token per add(), stop strings {stop or 'none'}; "
          f"byte table built and checked in {build_s * 1e3:.0f} ms")
    print(f"{'workload':<12} {'reference ns/token':>20} {'fast ns/token':>15} {'ratio':>7}   (min / median of "
          f"{args.rounds} alternating rounds, CPU time)")
    for name, streams in workloads(tok, args.streams, args.tokens, args.seed).items():
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for reference in (True, False):
                per_add, texts = run(tok, streams, reference, stop)
                times[reference].append(per_add)
                if reference:
                    expected = texts
                elif texts != expected:
                    raise SystemExit(f"{name}: the fast detokenizer's text differs from the reference's")
        ref, fast = ((min(times[r]), statistics.median(times[r])) for r in (True, False))
        print(f"{name:<12} {ref[0] * 1e9:>9.0f} / {ref[1] * 1e9:<8.0f} {fast[0] * 1e9:>6.0f} / {fast[1] * 1e9:<6.0f}"
              f" {ref[0] / fast[0]:>6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
