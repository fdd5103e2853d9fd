"""The emulator's crash tripwire: it counts one client's accepted writes, kills the process right after the k-th,
drops that answer and every later call of the dead client, and spares other clients."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
import pytest

from shoal.fleet.apiserver import serve
from shoal.fleet.apiserver.tripwire import Tripwire, bearer_token, counts_as_write

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def test_what_counts_as_a_write():
    assert counts_as_write("PATCH", "/apis/apps/v1/namespaces/x/deployments/a", 200)
    assert not counts_as_write("GET", "/api/v1/namespaces/x/configmaps", 200)
    assert not counts_as_write("POST", "/api/v1/namespaces/x/configmaps", 409)  # refused: nothing changed
    assert not counts_as_write("POST", "/api/v1/namespaces/x/events", 201)  # auxiliary records
    assert bearer_token("Bearer op-1") == "op-1" and bearer_token("Basic xyz") == ""


def test_arming_needs_a_pid_for_a_kill():
    with pytest.raises(ValueError, match="pid"):
        Tripwire().arm("op", None, 2)


async def test_kill_right_after_the_kth_write_and_drop_the_rest():
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        async with serve() as running, aiohttp.ClientSession() as session:
            running.api.tripwire.arm("op-1", victim.pid, after=2)
            headers = {"Authorization": "Bearer op-1"}

            async def create(name: str, token_headers: dict) -> int | str:
                try:
                    async with session.post(running.url + CONFIGMAPS, json={"metadata": {"name": name}},
                                            headers=token_headers) as resp:
                        return resp.status
                except aiohttp.ClientError as exc:
                    return type(exc).__name__

            assert await create("one", headers) == 201
            assert await create("two", headers) != 201  # applied, but the answer never left: the client died
            assert victim.wait(5) == -9
            assert await create("three", headers) != 201  # a call of the dead client: not served
            assert await create("other", {"Authorization": "Bearer someone-else"}) == 201
            names = {o["metadata"]["name"] for o in running.api.api.list(
                running.api.registry.get("", "v1", "configmaps"), "default")}
            assert names == {"one", "two", "other"}
            report = running.api.tripwire.report()
            assert report["killed"] and report["dropped"] == 1 and len(report["writes"]) == 2
    finally:
        if victim.poll() is None:
            victim.kill()


def test_autoscaler_losses_names_what_a_restart_undid():
    from crash_harness import autoscaler_losses

    before = {"desiredReplicas": 2, "autoscaling": {"lastScaleTime": "2026-11-27T10:00:05Z", "planner": {
        "capacityRps": 0.3, "lastTime": 100.0, "recentForecasts": [[99.0, 0.5], [100.0, 0.6]]}},
        "batch": {"maxNumSeqs": 256, "maxNumBatchedTokens": 6144, "tunedAt": 100.0}}
    resumed = {"desiredReplicas": 2, "autoscaling": {"lastScaleTime": "2026-11-27T10:00:05Z", "planner": {
        "capacityRps": 0.28, "lastTime": 101.0, "recentForecasts": [[99.0, 0.5], [100.0, 0.6], [101.0, 0.6]]}},
        "batch": {"maxNumSeqs": 256, "maxNumBatchedTokens": 6144, "tunedAt": 100.0}}
    deployment, configmap = {"spec": {"replicas": 2}}, {"data": {"maxNumBatchedTokens": "6144"}}
    assert autoscaler_losses(before, resumed, deployment, configmap) == []
    fresh = {"desiredReplicas": 1, "autoscaling": {"planner": {"capacityRps": 0.5, "lastTime": 101.0,
                                                               "recentForecasts": [[101.0, 0.6]]}},
             "batch": {"maxNumSeqs": 256, "maxNumBatchedTokens": 8192, "tunedAt": None}}
    lost = autoscaler_losses(before, fresh, {"spec": {"replicas": 1}}, {"data": {"maxNumBatchedTokens": "8192"}})
    assert any("forecasts" in m for m in lost) and any("lastScaleTime" in m for m in lost)
    assert any("desiredReplicas fell" in m for m in lost) and any("batch tuner" in m for m in lost)
    assert autoscaler_losses(before, resumed, {"spec": {"replicas": 3}}, configmap) == [
        "Deployment replicas 3 != desired 2"]
    assert autoscaler_losses(before, resumed, deployment, {"data": {"maxNumBatchedTokens": "8192"}})[0].startswith(
        "ConfigMap")
