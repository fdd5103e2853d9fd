"""SIGTERM to a real `shoal serve` (SmolLM2, CPU) with 32 streams in flight: every stream completes in full, /ready
turns 503 at once, new requests are refused, the process exits 0 with no crash logged."""

import pytest
from engine_load import sigterm_drain_campaign


@pytest.mark.timeout(300)
async def test_drain_sigterm_with_32_streams_in_flight():
    row = await sigterm_drain_campaign(32, max_tokens=24)
    print(row)
    assert row["in_flight_at_sigterm"] == 32 and row["in_flight_logged"] == 32, row
    assert row["completed_in_full"] == 32 and row["data_lost"] == 0, row
    assert row["ready_503_after_sigterm"] and row["new_refused"] == 5 and row["new_accepted_while_draining"] == 0
    assert row["exit_code"] == 0 and row["crash_lines"] == 0, row
