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
