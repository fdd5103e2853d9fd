"""Offered load at 10x the measured capacity of a real `shoal serve` (SmolLM2, CPU): the excess gets 429 with
Retry-After, the waiting queue never passes --max-waiting, memory stays bounded, no admitted request fails, and
admitted requests meet the TTFT SLO calibrated from the 1x run (engine_load.slo_ttft_s states it)."""

import pytest
from engine_load import overload_campaign

RSS_GROWTH_BOUND_MIB = 300  # measured growth at 10x for 60 s: under 1 MiB (the KV pool is allocated at start)


@pytest.mark.timeout(300)
async def test_overload_10x_capacity_refuses_excess_and_keeps_slo():
    row = await overload_campaign(seconds=15, factor=10.0, max_num_seqs=8, max_waiting=8, calibrate_s=8)
    row.pop("_results")
    print(row)
    assert row["refused_429"] > row["admitted"] > 0, row
    assert row["refused_429_with_retry_after"] == row["refused_429"], row
    assert row["failed_admitted"] == 0 and row["other_status"] == 0 and row["data_lost"] == 0, row
    assert row["max_waiting_seen"] <= 8 and row["max_running_seen"] <= 8, row
    assert row["rss_peak_mib"] - row["rss_before_mib"] < RSS_GROWTH_BOUND_MIB, row
    assert row["slo_met"], row
