"""CI smoke run of bench/engine_throughput.py: a tiny random model on CPU, with the transformers peer."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "engine_throughput.py"


def test_engine_throughput_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("engine_throughput", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "engine_throughput.json"
    result = bench.main(
        ["--model-shape", "tiny", "--num-seqs", "6", "--device", "cpu", "--min-input", "8", "--max-input", "40",
         "--min-output", "4", "--max-output", "24", "--hf-compare", "--out", str(out)]
    )
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(result))
    _, outputs = bench.make_workload(6, 8, 40, 4, 24, 512, 0)
    assert written["shoal"]["output_tokens"] == sum(outputs)
    assert written["shoal"]["output_tok_s"] > 0 and 0 < written["roofline"]["fraction"] < 1
    assert written["hf"]["output_tokens"] == sum(outputs)
    assert written["ratio_to_hf"] > 0


def test_engine_host_ab_smoke(tmp_path, tiny_llama):
    """bench/engine_host_ab.py still drives the engine through the stubbed launch (in a subprocess: it re-imports
    the shoal package, which would split this process's classes in two)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "ab.json"
    subprocess.run([sys.executable, str(root / "bench" / "engine_host_ab.py"), "--model-dir", str(tiny_llama[0]),
                    "--trees", str(root / "src"), "--seqs", "4", "--steps", "5", "--repeats", "2", "--async",
                    "--out", str(out)], check=True, timeout=120)
    [figures] = json.loads(out.read_text())["us_per_step"].values()
    assert 0 < figures["min"] <= figures["median"]
