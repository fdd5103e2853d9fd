"""The real operator's control loop under metrics faults: replicas held (no scale-down of an idle fleet it cannot
see, no scale-up or retune of a breaching one), MetricsAvailable=False naming the failure, and recovery when
Prometheus comes back -- kopf over HTTP against the API emulator, a real Prometheus behind the fault proxy."""

from __future__ import annotations

import pytest
from metrics_faults_campaign import HELD, OperatorUnderFaults


MESSAGE = {"down": "unreachable", "empty": "no series", "bad_json": "not JSON", "http_5xx": "HTTP 503",
           "engine_down": "series of 2 of 3 ready engines"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with OperatorUnderFaults(tmp_path_factory.mktemp("metrics-faults")) as fleet:
        yield fleet


def test_breaching_service_is_neither_scaled_nor_retuned_blind(fleet):
    during = fleet.busy_service_under("down")
    assert during["replicas"] == 1 and during["patches"] == 0
    assert during["runtime"] == {"maxNumSeqs": "256", "maxNumBatchedTokens": "8192"}  # startup capacity


@pytest.mark.parametrize("fault", ["down", "empty", "bad_json", "http_5xx", "engine_down"])
def test_fault_holds_replicas_and_recovers(fleet, fault):
    ep = fleet.episode(fault)
    assert ep.ticks >= 2, "the control loop did not run while the fault was on"
    assert ep.held == ep.ticks and ep.wrong_scale == 0 and ep.batch_changes == 0, ep
    assert fleet.replicas() == 1  # with the data back, the idle fleet scales down: the hold was the fault's doing
    assert MESSAGE[fault] in ep.notes[0], ep.notes  # the message says what failed, for the person reading it
    assert fleet.isvc()["status"]["desiredReplicas"] == 1 < HELD
