"""Real kopf over real HTTP: the emulator runs as `shoal apiserver` (its own process), the operator runs in a
thread with its own event loop, and tests act through kubectl (as a user) or plain HTTP (as a kubelet would)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from operator_harness import CRD, Http, find_kubectl, names, operator_config

from shoal.fleet.apiserver.process import ApiProcess, start_apiserver


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> ApiProcess:
    workdir = tmp_path_factory.mktemp("operator-api")
    previous = os.environ.get("KUBECONFIG")
    with start_apiserver(workdir, manifests=(CRD,)) as process:
        os.environ["KUBECONFIG"] = str(process.kubeconfig)  # read by the operator's login when it starts
        try:
            yield process
        finally:  # later test modules (e2e) read KUBECONFIG to pick a real cluster: leave it as it was
            if previous is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = previous


@pytest.fixture(scope="module")
def http(api) -> Http:
    return Http(api.url)


@pytest.fixture(scope="module")
def kubectl(api, tmp_path_factory):
    binary = find_kubectl()
    env = dict(os.environ, KUBECONFIG=str(api.kubeconfig), HOME=str(tmp_path_factory.mktemp("kubectl-home")))

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([binary, *args], env=env, input=input, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run


@pytest.fixture(scope="module")
def operator(api):
    from shoal.operator.main import OperatorThread

    with OperatorThread(operator_config()) as running:
        yield running


@pytest.fixture
def namespace(kubectl) -> str:
    name = f"t{os.getpid()}-{next(names)}"
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(manifest))
    return name
