"""Streams whose clients hang up at random points (before the headers, right after them, mid-stream) on a real
`shoal serve` of SmolLM2: the engine frees every KV block, nothing stays running or waiting, /health stays OK, and
no crash is logged. (bench/reliability_engine.py runs 1,000; this runs 120.)"""

import random

import pytest
from engine_load import abort_campaign


@pytest.mark.timeout(300)
async def test_engine_aborted_streams_free_kv_and_slots():
    row = await abort_campaign(120, concurrency=16, rng=random.Random(7))
    assert row["kv_cache_usage_after"] == 0 and row["running_after"] == 0 and row["waiting_after"] == 0, row
    assert row["abort_points"]["unexpected"] == 0, row
    assert row["abort_points"]["mid_stream"] > 0 and row["abort_points"]["before_headers"] > 0, row
    # every stream that reached the engine is counted as aborted (early hang-ups may never reach it)
    reached = row["abort_points"]["mid_stream"] + row["abort_points"]["after_headers"]
    assert reached <= row["aborts_counted_by_engine"] <= 120, row
    assert row["health_after"] == 200 and row["crash_lines"] == 0 and row["data_lost"] == 0, row
