"""The emulator's fault injector: rates, determinism, kinds, client targeting, and each kind over real HTTP."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from shoal.fleet.apiserver import FaultConfig, serve
from shoal.fleet.apiserver.faults import FaultInjector, pick_fault

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def draws(config: FaultConfig, calls: int, method: str = "PATCH", agent: str = "kopf/1") -> list[str | None]:
    injector = FaultInjector(config)
    return [getattr(injector.decide(method, agent, watch=False), "kind", None) for _ in range(calls)]


def test_uniform_rate_is_met_and_split_over_the_four_kinds():
    kinds = draws(FaultConfig.uniform(0.1, seed=3), 40_000)
    assert abs(sum(k is not None for k in kinds) / len(kinds) - 0.1) < 0.006
    for kind in ("conflict", "throttle", "error", "timeout"):
        assert abs(kinds.count(kind) / len(kinds) - 0.025) < 0.004, kind


def test_reads_fail_at_the_same_total_rate_but_never_conflict():
    kinds = draws(FaultConfig.uniform(0.2, seed=4), 20_000, method="GET")
    assert "conflict" not in kinds
    assert abs(sum(k is not None for k in kinds) / len(kinds) - 0.2) < 0.01
    assert abs(kinds.count("error") / len(kinds) - 0.2 / 3) < 0.008


def test_same_seed_same_faults_other_seed_other_faults():
    config = FaultConfig.uniform(0.3, seed=11)
    assert draws(config, 500) == draws(config, 500)
    assert draws(config, 500) != draws(FaultConfig.uniform(0.3, seed=12), 500)


def test_pick_fault_maps_the_draw_onto_cumulative_shares():
    config = FaultConfig(conflict=0.1, throttle=0.2, error=0.3, timeout=0.1)
    assert [pick_fault(config, u, True) for u in (0.05, 0.15, 0.35, 0.65, 0.71, 0.99)] == [
        "conflict", "throttle", "error", "timeout", None, None]
    # a read: conflict's 0.1 is spread over the others (x 0.7/0.6), the total stays 0.7
    assert pick_fault(config, 0.05, False) == "throttle" and pick_fault(config, 0.69, False) == "timeout"
    assert pick_fault(config, 0.701, False) is None


def test_only_the_targeted_clients_are_faulted_and_counted():
    injector = FaultInjector(FaultConfig(error=1.0, user_agents=("kopf", "shoal-operator")))
    assert injector.decide("GET", "kubectl/v1.31", watch=False) is None
    assert injector.decide("GET", "shoal-operator", watch=False).kind == "error"
    assert injector.report()["calls"] == 1 and injector.report()["injected"]["error"] == 1


def test_watch_drops_and_timeouts_carry_their_timing():
    injector = FaultInjector(FaultConfig(watch_drop=1.0, watch_drop_after_s=2.0, timeout=1.0, hang_s=0.25,
                                         timeout_applies=1.0))
    drop = injector.decide("GET", "kopf", watch=True)
    assert drop.kind == "watch_drop" and 0.0 <= drop.after_s <= 2.0
    write, read = injector.decide("POST", "kopf", watch=False), injector.decide("GET", "kopf", watch=False)
    assert (write.kind, write.apply_first, write.after_s) == ("timeout", True, 0.25)
    assert read.apply_first is False  # a read has nothing to apply
    assert injector.report()["timeoutsApplied"] == 1 and injector.report()["total"] == 3


@pytest.mark.parametrize("bad, field", [({"error": 1.5}, "error"), ({"conflict": -0.1}, "conflict"),
                                        ({"error": 0.6, "timeout": 0.6}, "<= 1"), ({"hang_s": -1}, "hang_s")])
def test_bad_configs_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        FaultConfig(**bad)


def test_command_line_spec_round_trips():
    config = FaultConfig.parse("rate=0.1,seed=7,hang_s=0.5,user_agents=kopf|shoal-operator")
    assert (config.conflict, config.watch_drop, config.seed, config.user_agents) == (
        0.025, 0.1, 7, ("kopf", "shoal-operator"))
    assert FaultConfig.parse(config.to_text()) == config
    with pytest.raises(ValueError, match="KEY=VALUE"):
        FaultConfig.parse("rate=0.1,sede=3")


async def _call(session: aiohttp.ClientSession, method: str, url: str, **kw) -> tuple[int, dict, dict]:
    async with session.request(method, url, **kw) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def test_each_kind_over_http_and_the_debug_counts():
    async with serve(faults=FaultConfig(conflict=1.0)) as running, aiohttp.ClientSession() as session:
        url = running.url + CONFIGMAPS
        status, _, body = await _call(session, "POST", url, json={"metadata": {"name": "a"}})
        assert (status, body["reason"]) == (409, "Conflict")

        running.api.faults.configure(FaultConfig(throttle=1.0, retry_after_s=3))
        status, headers, body = await _call(session, "GET", url)
        assert (status, headers["Retry-After"], body["details"]["retryAfterSeconds"]) == (429, "3", 3)

        running.api.faults.configure(FaultConfig(error=1.0))
        assert (await _call(session, "GET", url))[0] == 500

        # a timeout that applied the write: no answer, yet the object exists
        running.api.faults.configure(FaultConfig(timeout=1.0, hang_s=0.2, timeout_applies=1.0))
        started = time.monotonic()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await _call(session, "POST", url, json={"metadata": {"name": "b"}})
        assert time.monotonic() - started >= 0.2
        running.api.faults.configure(FaultConfig())
        assert (await _call(session, "GET", url + "/b"))[0] == 200

        # PUT /debug/faults reconfigures from outside the process; GET reports the counts
        status, _, report = await _call(session, "PUT", running.url + "/debug/faults",
                                        json={"watch_drop": 1.0, "watch_drop_after_s": 0.2})
        assert status == 200 and report["config"]["watch_drop"] == 1.0
        lines = []
        with pytest.raises(aiohttp.ClientPayloadError):  # cut mid-stream: no closing chunk
            async with session.get(url, params={"watch": "true"}) as resp:
                async for line in resp.content:
                    lines.append(line)
        assert len(lines) == 1  # the ADDED event of `b` came before the cut
        _, _, report = await _call(session, "GET", running.url + "/debug/faults")
        assert report["injected"]["watch_drop"] == 1 and report["watches"] == 1
        status, _, body = await _call(session, "PUT", running.url + "/debug/faults", json={"error": 7})
        assert status == 400 and "error" in body["message"]


async def test_faults_spare_other_clients_over_http():
    config = FaultConfig(error=1.0, user_agents=("shoal-operator",))
    async with serve(faults=config) as running, aiohttp.ClientSession() as session:
        url = running.url + CONFIGMAPS
        assert (await _call(session, "GET", url, headers={"User-Agent": "kubectl"}))[0] == 200
        assert (await _call(session, "GET", url, headers={"User-Agent": "shoal-operator"}))[0] == 500
        assert running.api.faults.report()["total"] == 1


async def test_the_command_line_flag_starts_a_faulty_server(tmp_path):
    from shoal.fleet.apiserver.process import start_apiserver

    spec = FaultConfig(error=0.3, throttle=0.2, seed=5, user_agents=("faulted",))  # no timeouts: clients retry those
    with start_apiserver(tmp_path, faults=spec) as process:
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(_call(session, "GET", process.url + CONFIGMAPS,
                                                   headers={"User-Agent": "faulted"}) for _ in range(40)),
                                           return_exceptions=True)
            _, _, report = await _call(session, "GET", process.url + "/debug/faults")
    assert report["config"]["seed"] == 5 and report["calls"] == 40
    failed = sum(r[0] >= 400 for r in results)
    assert failed == report["total"] and 8 <= failed <= 32
