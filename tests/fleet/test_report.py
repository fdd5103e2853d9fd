"""Report and plot from recorded samples, and the load generator's window statistics."""

from shoal.fleet.loadgen import RequestRecord, percentile, window_stats
from shoal.fleet.report import RunInfo, Sample, attainment, build_markdown, events, plot, summary

INFO = RunInfo(command="shoal demo --duration 60", machine="2 cores", capacity_note="2 slots", trace_note="x",
               slo_ttft_ms=1000, slo_itl_ms=100, window_s=10, started="2026-01-01", duration_s=60, service="ml/chat",
               example_file="examples/local-cpu.yaml")


def rec(sent, ttft, gaps, error=None):
    r = RequestRecord(sent_at=sent, prompt_tokens=10, max_tokens=len(gaps) + 1, first_token_at=sent + ttft,
                      done_at=sent + ttft + sum(gaps), output_tokens=len(gaps) + 1, token_gaps=list(gaps), error=error)
    return r


def test_percentile_and_window_stats():
    assert percentile([], 95) is None
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    records = [rec(0, 0.5, [0.05, 0.05]), rec(1, 2.0, [0.2]), rec(50, 0.1, [0.01]), rec(2, 0.1, [], error="HTTP 503")]
    stats = window_stats(records, now=10, window_s=10)
    assert stats["ttft_p95_ms"] == 2000 and stats["itl_p95_ms"] == 200
    assert stats["failed"] == 1 and stats["sent_rps"] == 0.3


def samples():
    return [
        Sample(0, 1, 1, 500, 50, 1, 1, 16, [16]),
        Sample(1, 3, 2, 3000, 150, 2, 1, 16, [16], decision="TTFT p95 3000 ms > SLO"),
        Sample(2, 3, 3, 800, 120, 2, 2, 8, [8, 8], tune_reason="ITL over SLO, TTFT fine"),
        Sample(3, 1, 1, None, None, 2, 2, 8, [8, 8]),
    ]


def test_token_budget_changes_are_events_too():
    a = Sample(0, 1, 1, 1, 1, 1, 1, 16, [16], max_num_batched_tokens=2048)
    b = Sample(5, 1, 1, 1, 1, 1, 1, 16, [16], max_num_batched_tokens=1536, tune_reason="ITL high: cut token budget")
    assert events([a, b]) == [(5, "maxNumBatchedTokens 2048 -> 1536: ITL high: cut token budget")]


def test_events_and_attainment():
    evs = events(samples())
    assert evs == [(1, "replicas 1 -> 2: TTFT p95 3000 ms > SLO"), (2, "maxNumSeqs 16 -> 8: ITL over SLO, TTFT fine")]
    assert attainment(samples(), 1000, 100) == (1 / 3, 3)


def test_markdown_and_plot(tmp_path):
    records = [rec(0, 0.5, [0.05]), rec(1, 0.7, [0.07], error="HTTP 503")]
    assert summary(records)["failed"] == 1
    md = build_markdown(INFO, samples(), records, "demo.png")
    assert "shoal demo --duration 60" in md and "![run](demo.png)" in md
    assert "1 / 1 / 1" not in md and "2 / 1 / 1" in md
    assert "replicas 1 -> 2" in md and "8, 16" in md
    plot(samples(), INFO, tmp_path / "demo.png")
    assert (tmp_path / "demo.png").read_bytes()[:4] == b"\x89PNG"
