"""Scale-down while clients stream through the local fleet's service proxy to two real `shoal serve` pods (SmolLM2,
CPU): the removed pod leaves the endpoints before its SIGTERM (no request is routed to it while it drains), the
streams it holds finish, and no client request fails."""

import pytest
from engine_fleet_drain import fleet_scale_down_campaign


@pytest.mark.timeout(400)
async def test_drain_fleet_scale_down_loses_no_stream(tmp_path):
    row = await fleet_scale_down_campaign(streams=8, max_tokens=16, workdir=tmp_path)
    print(row)
    assert row["in_flight_on_removed_pod"] > 0, row  # the pod really was serving when it was told to go
    assert row["failed_requests"] == 0 and row["data_lost"] == 0, row
    assert row["endpoint_removed_before_sigterm"], row
    assert row["requests_routed_to_draining_pod"] == 0, row
    assert row["requests_after_scale_down"] >= 8, row
