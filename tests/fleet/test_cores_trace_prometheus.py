"""Core slots, trace compression and Prometheus config: the fleet's pure pieces."""

import json

import pytest

from shoal.fleet.cores import assign_slot, capacity_note, make_slots
from shoal.fleet.prometheus import PrometheusSettings, ScrapeTarget, build_config, build_targets
from shoal.fleet.trace import ReplayConfig, compress, find_trace, rate_per_window, read_trace


def test_slots_cut_cores_and_cap_replicas():
    slots = make_slots((0, 1, 2, 3, 4), 2)
    assert slots.slots == ((0, 1), (2, 3))
    assert make_slots((0, 1), 1).capacity == 2
    with pytest.raises(ValueError, match="--cores-per-replica 2"):
        make_slots((0, 1), 3)


def test_assign_slot_prefers_least_used():
    slots = make_slots((0, 1, 2), 1)
    assert assign_slot(slots, {}) == 0
    assert assign_slot(slots, {"a": 0, "b": 2}) == 1
    assert assign_slot(slots, {"a": 0, "b": 1, "c": 2, "d": 0}) == 1


def test_capacity_note_says_it_plainly():
    note = capacity_note(make_slots((0, 1), 1), 1, 4)
    assert "2 core(s)" in note and "maxReplicas is 2" in note and "asked for 4" in note


def test_prometheus_config_and_targets(tmp_path):
    cfg = build_config(PrometheusSettings(scrape_interval_s=1.5), tmp_path / "t.json")
    assert cfg["global"]["scrape_interval"] == "1500ms"
    assert cfg["scrape_configs"][0]["file_sd_configs"][0]["files"] == [str(tmp_path / "t.json")]
    targets = build_targets([ScrapeTarget("127.0.0.1:2", "ml", "chat", "chat-b"), ScrapeTarget("127.0.0.1:1", "ml", "chat", "chat-a")])
    assert targets[0] == {"targets": ["127.0.0.1:1"], "labels": {"namespace": "ml", "service": "chat", "pod": "chat-a"}}
    json.dumps(targets)
    with pytest.raises(ValueError, match="scrape_interval_s"):
        PrometheusSettings(scrape_interval_s=0)


def test_trace_compression_keeps_shape_and_scales_tokens():
    rows = read_trace(find_trace())
    assert len(rows) == 19366
    config = ReplayConfig(duration_s=120, mean_rps=3, token_divisor=16, seed=1)
    reqs = compress(rows, config)
    assert reqs == compress(rows, config)  # deterministic for a seed
    assert 0.8 * 360 < len(reqs) < 1.2 * 360
    assert all(0 <= r.at_s <= 120.0001 for r in reqs)
    assert all(8 <= r.prompt_tokens <= 256 and 4 <= r.output_tokens <= 48 for r in reqs)
    # The trace peaks around minute 31 of 60 and starts lower: the compressed replay keeps that swing.
    rates = rate_per_window(reqs, 20, 120)
    assert max(rates[2:4]) > 1.3 * rates[0]


def test_trace_missing_is_a_clear_error(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "pyproject.toml").write_text("")
    with pytest.raises(FileNotFoundError, match="shared/traces"):
        find_trace(tmp_path / "repo" / "src" / "x.py")
