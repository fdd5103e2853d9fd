"""e2e fixtures: one fleet for the session — the local fleet by default, a real cluster when KUBECONFIG is set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cluster import Cluster

# Test-configured operator timing: the control loop every 2 s instead of 15 s (the operator itself is unchanged).
OPERATOR_ENV = {"SHOAL_AUTOSCALER_PERIOD_SECONDS": os.environ.get("SHOAL_E2E_AUTOSCALER_PERIOD_SECONDS", "2")}
OPERATOR_ARGS = tuple(os.environ.get("SHOAL_E2E_OPERATOR_ARGS", "").split())


def pytest_collection_modifyitems(items):
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Cluster:
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        c = Cluster(kubeconfig=Path(kubeconfig), local=False)
    else:
        c = Cluster.start_local(tmp_path_factory.mktemp("fleet"), OPERATOR_ARGS, OPERATOR_ENV)
    try:
        yield c
    finally:
        c.stop()
