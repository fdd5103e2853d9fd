"""Indexed storage: a write costs the same at 5,000 objects as at 5 (kmock 0.8 slows with every object)."""

from __future__ import annotations

import asyncio
import time

CM = "/api/v1/namespaces/default/configmaps"


async def create_many(client, start: int, stop: int, batch: int = 50) -> float:
    """Create configmaps start..stop-1 in concurrent batches; returns writes per second."""
    async def one(i: int) -> None:
        status, body = await client.post(CM, {"metadata": {"name": f"cm-{i}", "labels": {"shard": str(i % 10)}},
                                              "data": {"index": str(i)}})
        assert status == 201, body

    began = time.perf_counter()
    for low in range(start, stop, batch):
        await asyncio.gather(*(one(i) for i in range(low, min(stop, low + batch))))
    return (stop - start) / (time.perf_counter() - began)


async def test_writes_per_second_at_5000_objects(client, running):
    early = await create_many(client, 0, 200)
    await create_many(client, 200, 5000)
    late = await create_many(client, 5000, 5500)
    print(f"writes/s: first 200 objects {early:.0f}, after 5,000 objects {late:.0f}")
    assert running.api.store.count() >= 5500
    assert late >= 500, f"{late:.0f} writes/s at 5,000 objects; the target is >= 500"
    began = time.perf_counter()
    status, body = await client.get(CM, labelSelector="shard=3")
    assert status == 200 and len(body["items"]) == 550
    assert time.perf_counter() - began < 1.0
