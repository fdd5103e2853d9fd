"""Drain state machine and the bounded waiting queue."""

import asyncio

import pytest

from shoal.engine.server.admission import MAX_RETRY_AFTER_S, Admission, retry_after_seconds
from shoal.engine.server.errors import APIError
from shoal.engine.server.lifecycle import Lifecycle, State


async def test_lifecycle_admits_only_when_ready_and_drain_waits():
    life = Lifecycle()
    with pytest.raises(APIError) as info:
        life.admit()
    assert info.value.status == 503 and not life.ready
    life.mark_ready()
    life.admit()
    life.admit()
    assert life.begin_drain() and not life.begin_drain() and life.state is State.DRAINING
    with pytest.raises(APIError) as info:
        life.admit()
    assert info.value.status == 503 and "draining" in info.value.message
    assert not await life.wait_idle(0.01)
    life.release()
    asyncio.get_running_loop().call_later(0.02, life.release)
    assert await life.wait_idle(1.0) and life.in_flight == 0


def test_admission_bounds_waiting_with_retry_after():
    now = [0.0]
    adm = Admission(max_waiting=2, clock=lambda: now[0])
    adm.admit(4, admission_cap=2)  # 2 run, 2 wait
    with pytest.raises(APIError) as info:
        adm.admit(1, admission_cap=2)
    assert info.value.status == 429 and info.value.headers["Retry-After"] == str(retry_after_seconds(1, 0.0))
    assert adm.in_engine == 4
    for _ in range(3):
        adm.finished()
    assert adm.finish_rate() == pytest.approx(0.3)
    adm.admit(3, admission_cap=2)  # 4 in engine: 2 run, 2 wait
    now[0] = 100.0
    assert adm.finish_rate() == 0.0


def test_retry_after_seconds():
    assert retry_after_seconds(10, 5.0) == 2
    assert retry_after_seconds(1, 100.0) == 1
    assert retry_after_seconds(10_000, 1.0) == MAX_RETRY_AFTER_S
    assert 1 <= retry_after_seconds(3, 0.0) <= MAX_RETRY_AFTER_S
