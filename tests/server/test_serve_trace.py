"""The trace replayer's pure parts: trace reading with rate scaling and clipping, and the summary maths."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("serve_trace", ROOT / "bench" / "serve_trace.py")
serve_trace = sys.modules["serve_trace"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serve_trace)

CSV = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.6805900,396,109
2023-11-16 18:15:52.6805900,879,0
2023-11-16 18:15:56.6805900,91,16
"""


def test_read_trace_scales_clips_and_windows(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    rows = serve_trace.read_trace(path, rate_scale=2.0, max_context=400, max_output=100)
    assert [r.offset_s for r in rows] == pytest.approx([0.0, 2.0, 3.0, 5.0])
    assert [(r.prompt_tokens, r.output_tokens) for r in rows] == [(374, 44), (396, 100), (400, 1), (91, 16)]
    rows = serve_trace.read_trace(path, start_s=4.0, duration_s=5.0)
    assert [r.offset_s for r in rows] == pytest.approx([0.0, 2.0]) and rows[0].prompt_tokens == 396
    assert len(serve_trace.read_trace(path, max_requests=3)) == 3
    with pytest.raises(ValueError, match="rate_scale"):
        serve_trace.read_trace(path, rate_scale=0)


def test_summarize_goodput_and_percentiles():
    R = serve_trace.Result
    results = [
        R(0, 10, 5, status=200, ttft_s=0.1, itl_s=[0.01] * 4, e2e_s=0.14, completion_tokens=5),  # meets both
        R(0, 10, 5, status=200, ttft_s=0.9, itl_s=[0.01] * 4, e2e_s=0.94, completion_tokens=5),  # TTFT miss
        R(0, 10, 5, status=200, ttft_s=0.1, itl_s=[0.2] * 4, e2e_s=0.9, completion_tokens=5),  # ITL miss
        R(0, 10, 5, status=429, error="full"),
    ]
    s = serve_trace.summarize(results, wall_s=2.0, ttft_slo_s=0.5, itl_slo_s=0.05)
    assert s["succeeded"] == 3 and s["statuses"] == {"200": 3, "429:full": 1}
    assert s["goodput_rps"] == 0.5 and s["slo_attainment"] == 0.25
    assert s["ttft_ms"]["p50"] == 100.0 and s["ttft_ms"]["p99"] == 900.0
    assert s["output_tokens_per_s"] == 7.5
    assert serve_trace.percentiles([])["p95"] is None
