"""bench/prepare_inputs.py still drives the runner's _prepare (it builds a runner without a model, so a change to
what _prepare reads would break it quietly). In a subprocess: the script imports shoal from the given tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_prepare_inputs_bench_runs_and_reports_each_layout():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "prepare_inputs.py"), "--seqs", "5", "--context", "70",
                          "--repeats", "1", "--calls", "3"], env=env, capture_output=True, text=True, timeout=120,
                         check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows] == [
        "eager layout: _prepare", "graph layout: _prepare", "graph layout: _prepare + DecodeGraphs.load"]
    assert all(float(r.split("|")[2].split()[0]) > 0 for r in rows)
