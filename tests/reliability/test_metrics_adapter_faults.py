"""The Prometheus adapter under every metrics fault, through a fault-injecting proxy in front of a real Prometheus
scraping idle engines: each fault is no data with its failure kind (never zero), the planners hold the replicas and
the batch limits, MetricsAvailable names the failure, and the adapter reads true values again once it clears."""

from __future__ import annotations

import time

import pytest
from metrics_faults_harness import (
    EXPECTED_REASON, FAULTS, SLOW_S, FaultProxy, IdleEngine, running_prometheus, targets, wait_for,
)

from shoal.operator import prometheus as prom
from shoal.operator.autoscaler import metrics_condition
from shoal.operator.planners import (
    BatchState, MetricsSnapshot, PlannerSpec, ReplicaState, plan_replicas, tune_batch_limits,
)

NS, SVC = "ml", "chat"
SPEC = PlannerSpec(min_replicas=1, max_replicas=8, ttft_slo_s=0.5, itl_slo_s=0.05, scale_down_stabilization_s=0)
# What each fault makes of each query (idle engines: the latency quantiles have no samples even without a fault).
ALL = tuple(prom.service_queries(NS, SVC))
EXPECTED_KINDS = {
    "down": dict.fromkeys(ALL, prom.UNREACHABLE), "slow": dict.fromkeys(ALL, prom.TIMEOUT),
    "empty": dict.fromkeys(ALL, prom.NO_SERIES), "nan": dict.fromkeys(ALL, prom.NO_SAMPLES),
    "http_5xx": dict.fromkeys(ALL, prom.HTTP_ERROR), "query_error": dict.fromkeys(ALL, prom.QUERY_ERROR),
    "partial": {"ttft_p95_s": prom.NO_SAMPLES, "itl_p95_s": prom.NO_SAMPLES, "waiting": prom.NO_SERIES,
                "engines": prom.NO_SERIES},
    **{f: dict.fromkeys(ALL, prom.MALFORMED) for f in ("bad_json", "html_200", "wrong_type", "scalar", "inf",
                                                       "negative", "non_numeric", "two_series")},
}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    engines = [IdleEngine() for _ in range(3)]
    try:
        with running_prometheus(tmp_path_factory.mktemp("prom"), targets(engines, NS, SVC)) as url:
            proxy = FaultProxy(url)
            try:
                wait_for(lambda: read(proxy).complete_for_idle, timeout=45, what="two scrapes of every engine")
                yield proxy
            finally:
                proxy.close()
    finally:
        for engine in engines:
            engine.stop()


class Read:
    def __init__(self, metrics: prom.ServiceMetrics, seconds: float):
        self.metrics, self.seconds = metrics, seconds

    @property
    def complete_for_idle(self) -> bool:
        m = self.metrics
        return (m.waiting, m.running, m.arrival_rate, m.engines) == (0, 0, 0, 3)


def read(proxy: FaultProxy) -> Read:
    import asyncio

    async def once():
        client = prom.PrometheusClient(proxy.url, timeout_s=1.0)
        try:
            started = time.monotonic()
            return Read(await client.service_metrics(NS, SVC), time.monotonic() - started)
        finally:
            await client.close()

    return asyncio.run(once())


def decide(metrics: prom.ServiceMetrics, replicas: int = 3):
    """What the control loop makes of these metrics for a service at `replicas`, all ready."""
    metrics = prom.covering(metrics, replicas)
    snap = MetricsSnapshot(1000.0, metrics.ttft_p95_s, metrics.itl_p95_s, metrics.waiting, metrics.running,
                           metrics.kv_usage, metrics.arrival_rate, ready_replicas=replicas, current_replicas=replicas)
    state = ReplicaState(capacity_rps=5.0, last_rate=0.0, last_time=985.0)
    batch = BatchState(64, 2048, last_tune_time=0.0)
    return (plan_replicas(snap, state, SPEC), tune_batch_limits(snap, batch, SPEC), metrics_condition(snap, metrics))


def test_the_control_scales_an_idle_fleet_down(proxy):
    proxy.set(None)
    rdec, bdec, cond = decide(read(proxy).metrics)
    assert rdec.replicas == 1 and cond[:2] == ("True", "MetricsFresh")  # so a hold below is the fault's doing
    assert not bdec.changed


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_is_no_data_and_the_loop_holds(proxy, fault):
    proxy.set(fault)
    try:
        faulty = read(proxy)
    finally:
        proxy.set(None)
    m = faulty.metrics
    assert m.failures == EXPECTED_KINDS[fault], m.errors
    assert all(getattr(m, name) is None for name in m.failures) and set(m.errors) == set(m.failures)
    assert all(m.errors.values())  # every None says why
    if fault == "slow":
        assert faulty.seconds < SLOW_S  # the queries run at once and each gives up at the adapter's timeout
    rdec, bdec, cond = decide(m)
    assert rdec.replicas == 3 and "no data" in rdec.reason and not rdec.metrics_available
    assert not bdec.changed and (bdec.state.max_num_seqs, bdec.state.max_num_batched_tokens) == (64, 2048)
    assert cond[0] == "False" and cond[1] == EXPECTED_REASON[fault], cond
    assert read(proxy).complete_for_idle  # the fault cleared: true values again


def test_down_refuses_connections_and_comes_back(proxy):
    proxy.set("down")
    try:
        assert read(proxy).metrics.failure_of(ALL) == prom.UNREACHABLE
    finally:
        proxy.set(None)
    assert proxy.served.get("down", 0) == 0  # nothing answered while down: it was refused, not rewritten
    wait_for(lambda: read(proxy).complete_for_idle, timeout=10, what="the proxy listening again")


def test_fewer_scraped_engines_than_ready_is_partial():
    metrics = prom.ServiceMetrics(None, None, 0.0, 0.0, 0.0, 0.0, engines=2.0,
                                  errors={"ttft_p95_s": "no samples in the window"},
                                  failures={"ttft_p95_s": prom.NO_SAMPLES})
    assert prom.covering(metrics, 2) is metrics
    rdec, bdec, cond = decide(metrics, replicas=3)
    assert rdec.replicas == 3 and not bdec.changed
    assert cond[1] == prom.PARTIAL and "2 of 3 ready engines" in cond[2]
