"""Real kopf over real HTTP: the emulator runs as `shoal apiserver` (its own process), the operator runs in a
thread with its own event loop, and tests act through kubectl (as a user) or plain HTTP (as a kubelet would)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from shoal.fleet.apiserver.process import ApiProcess, start_apiserver

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "inferenceservice.yaml"
_names = itertools.count()


class Http:
    """Plain JSON calls to the API (what a kubelet or controller would do; never the kubernetes package)."""

    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body: Any = None,
             content_type: str = "application/merge-patch+json") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        return body if status == 200 else None


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def find_kubectl() -> str:
    local = REPO / ".tools" / "kubectl"
    found = shutil.which("kubectl") or (str(local) if local.exists() else None)
    if found is None:
        raise RuntimeError("kubectl is needed by these tests: put it on PATH or at .tools/kubectl")
    return found


@pytest.fixture(scope="session")
def api(tmp_path_factory) -> ApiProcess:
    workdir = tmp_path_factory.mktemp("operator-api")
    with start_apiserver(workdir, crds=(CRD,)) as process:
        os.environ["KUBECONFIG"] = str(process.kubeconfig)  # before anything imports a Kubernetes client
        yield process


@pytest.fixture(scope="session")
def http(api) -> Http:
    return Http(api.url)


@pytest.fixture(scope="session")
def kubectl(api, tmp_path_factory):
    binary = find_kubectl()
    env = dict(os.environ, KUBECONFIG=str(api.kubeconfig), HOME=str(tmp_path_factory.mktemp("kubectl-home")))

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([binary, *args], env=env, input=input, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run


def operator_config(**overrides):
    from shoal.operator.config import OperatorConfig

    settings = dict(engine_image="registry.example/shoal-engine:test", all_namespaces=True, liveness_port=None,
                    metrics_port=None, standalone=True, resync_seconds=1.0)
    settings.update(overrides)
    return OperatorConfig(**settings)


@pytest.fixture(scope="session")
def operator(api):
    from shoal.operator.main import OperatorThread

    with OperatorThread(operator_config()) as running:
        yield running


@pytest.fixture
def namespace(kubectl) -> str:
    name = f"t{os.getpid()}-{next(_names)}"
    kubectl("apply", "--validate=false", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    return name


def isvc_yaml(name: str, namespace: str, **spec: Any) -> str:
    body = {"apiVersion": "shoal.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"name": "smollm2", "uri": "pvc://models/smollm2"}, **spec}}
    return json.dumps(body)
