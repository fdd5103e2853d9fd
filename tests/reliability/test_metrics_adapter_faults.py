"""The Prometheus adapter under every metrics fault, through a fault-injecting proxy in front of a real Prometheus
scraping idle engines: each fault is no data with its failure kind (never zero), the planners hold the replicas and
the batch limits, MetricsAvailable names the failure, and the adapter reads true values again once it clears."""

from __future__ import annotations

import pytest
from metrics_faults_harness import (
    EXPECTED_REASON, FAULTS, SLOW_S, FaultProxy, IdleEngine, decide, expected_kinds, idle_and_complete, read_metrics,
    running_prometheus, targets, wait_for,
)

from shoal.operator import prometheus as prom

NS, SVC = "ml", "chat"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    engines = [IdleEngine() for _ in range(3)]
    try:
        with running_prometheus(tmp_path_factory.mktemp("prom"), targets(engines, NS, SVC)) as url:
            proxy = FaultProxy(url)
            try:
                wait_for(lambda: idle_and_complete(read(proxy), 3), timeout=45, what="two scrapes of every engine")
                yield proxy
            finally:
                proxy.close()
    finally:
        for engine in engines:
            engine.stop()


def read(proxy: FaultProxy) -> prom.ServiceMetrics:
    return read_metrics(proxy.url, NS, SVC)[0]


def test_the_control_scales_an_idle_fleet_down(proxy):
    proxy.set(None)
    rdec, bdec, cond = decide(read(proxy))
    assert rdec.replicas == 1 and cond[:2] == ("True", "MetricsFresh")  # so a hold below is the fault's doing
    assert not bdec.changed


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_is_no_data_and_the_loop_holds(proxy, fault):
    proxy.set(fault)
    try:
        m, seconds = read_metrics(proxy.url, NS, SVC)
    finally:
        proxy.set(None)
    assert m.failures == expected_kinds(fault), m.errors
    assert all(getattr(m, name) is None for name in m.failures) and set(m.errors) == set(m.failures)
    assert all(m.errors.values())  # every None says why
    if fault == "slow":
        assert seconds < SLOW_S  # the queries run at once and each gives up at the adapter's timeout
    rdec, bdec, cond = decide(m)
    assert rdec.replicas == 3 and "no data" in rdec.reason and not rdec.metrics_available
    assert not bdec.changed and (bdec.state.max_num_seqs, bdec.state.max_num_batched_tokens) == (64, 2048)
    assert cond[0] == "False" and cond[1] == EXPECTED_REASON[fault], cond
    assert idle_and_complete(read(proxy), 3)  # the fault cleared: true values again


def test_down_refuses_connections_and_comes_back(proxy):
    proxy.set("down")
    try:
        assert read(proxy).failure_of(prom.service_queries(NS, SVC)) == prom.UNREACHABLE
    finally:
        proxy.set(None)
    assert proxy.served.get("down", 0) == 0  # nothing answered while down: it was refused, not rewritten
    wait_for(lambda: idle_and_complete(read(proxy), 3), timeout=10, what="the proxy listening again")


def test_fewer_scraped_engines_than_ready_is_partial():
    metrics = prom.ServiceMetrics(None, None, 0.0, 0.0, 0.0, 0.0, engines=2.0,
                                  errors={"ttft_p95_s": "no samples in the window"},
                                  failures={"ttft_p95_s": prom.NO_SAMPLES})
    assert prom.covering(metrics, 2) is metrics
    rdec, bdec, cond = decide(metrics, replicas=3)
    assert rdec.replicas == 3 and not bdec.changed
    assert cond[1] == prom.PARTIAL and "2 of 3 ready engines" in cond[2]
