"""kubectl, as a user would run it, against the emulator running as `shoal apiserver`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shoal.fleet.apiserver.process import start_apiserver

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "inferenceservice.yaml"


def find_kubectl() -> str:
    found = shutil.which("kubectl") or (str(REPO / ".tools" / "kubectl") if (REPO / ".tools" / "kubectl").exists() else None)
    if found is None:
        raise RuntimeError("kubectl is needed by these tests: put it on PATH or at .tools/kubectl")
    return found


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("kubectl")
    with start_apiserver(workdir, manifests=(CRD,)) as api:
        binary = find_kubectl()
        env = dict(os.environ, KUBECONFIG=str(api.kubeconfig), HOME=str(workdir))

        def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
            result = subprocess.run([binary, *args], env=env, input=input, capture_output=True, text=True,
                                    timeout=60)
            if check and result.returncode != 0:
                raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
            return result

        run.kubeconfig = api.kubeconfig
        yield run


ISVC = """
apiVersion: shoal.dev/v1alpha1
kind: InferenceService
metadata: {name: chat}
spec:
  model: {name: smollm2, uri: pvc://models/smollm2}
  replicas: REPLICAS
"""


def test_apply_get_scale_wait_delete(kubectl):
    assert "created" in kubectl("apply", "--validate=false", "-f", "-", input=ISVC.replace("REPLICAS", "2")).stdout
    table = kubectl("get", "shoal").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "REPLICAS", "TTFT-P95", "ITL-P95", "MAX-SEQS", "AGE"]
    assert table[1].split()[0] == "chat"
    assert "configured" in kubectl("apply", "--validate=false", "-f", "-", input=ISVC.replace("REPLICAS", "3")).stdout
    obj = json.loads(kubectl("get", "inferenceservice", "chat", "-o", "json").stdout)
    assert obj["spec"]["replicas"] == 3 and obj["metadata"]["generation"] == 2
    assert obj["spec"]["engine"]["maxNumSeqs"] == 256  # defaulted from the CRD schema
    kubectl("scale", "inferenceservice", "chat", "--replicas=5")
    assert kubectl("get", "shoal", "chat", "-o", "jsonpath={.spec.replicas}").stdout == "5"
    kubectl("delete", "shoal", "chat", "--wait=true")
    assert "NotFound" in kubectl("get", "shoal", "chat", check=False).stderr


def test_invalid_spec_is_rejected_with_the_field_named(kubectl):
    bad = ISVC.replace("REPLICAS", "1") + "  autoscaling: {minReplicas: 4, maxReplicas: 2}\n"
    result = kubectl("apply", "--validate=false", "-f", "-", input=bad, check=False)
    assert result.returncode != 0 and "spec.autoscaling.minReplicas" in result.stderr


def test_wait_for_a_condition_and_deployment_scale(kubectl):
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(deploy))
    kubectl("scale", "deployment", "web", "--replicas=3")
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "3"
    header, row = kubectl("get", "deploy", "web").stdout.splitlines()
    assert header.split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] and row.split()[1] == "0/3"
    kubectl("wait", "--for=condition=established", "crd/inferenceservices.shoal.dev", "--timeout=10s")
    kubectl("delete", "-f", "-", input=json.dumps(deploy))
    assert kubectl("get", "deploy", "-o", "name").stdout.strip() == ""


def test_get_watch_prints_printer_columns(kubectl):
    kubectl("apply", "--validate=false", "-f", "-", input=ISVC.replace("chat", "watched").replace("REPLICAS", "1"))
    watcher = subprocess.Popen([find_kubectl(), "get", "shoal", "watched", "-w"], stdout=subprocess.PIPE, text=True,
                               env=dict(os.environ, KUBECONFIG=str(kubectl.kubeconfig)))
    try:
        header = watcher.stdout.readline().split()
        assert header[:3] == ["NAME", "READY", "REPLICAS"]
        watcher.stdout.readline()  # the current state
        kubectl("patch", "shoal", "watched", "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"replicas": 1, "conditions": [{"type": "Ready", "status": "True"}]}}))
        assert watcher.stdout.readline().split()[:3] == ["watched", "True", "1"]
    finally:
        watcher.kill()
        watcher.wait()


def test_kubectl_create_sends_protobuf_for_namespaces_configmaps_secrets(kubectl):
    kubectl("create", "namespace", "ml")
    kubectl("create", "configmap", "limits", "-n", "ml", "--from-literal=maxNumSeqs=64")
    kubectl("create", "secret", "generic", "token", "-n", "ml", "--from-literal=token=s3cret")
    assert json.loads(kubectl("get", "configmap", "limits", "-n", "ml", "-o", "json").stdout)["data"] == {
        "maxNumSeqs": "64"}
    encoded = kubectl("get", "secret", "token", "-n", "ml", "-o", "jsonpath={.data.token}").stdout
    assert base64.b64decode(encoded) == b"s3cret"
    refused = kubectl("create", "deployment", "web", "--image=x", check=False)
    assert refused.returncode != 0 and "kubectl apply -f" in refused.stderr


def test_server_side_dry_run_validates_without_storing(kubectl):
    services = [doc for example in sorted((REPO / "examples").glob("*.yaml"))
                for doc in yaml.safe_load_all(example.read_text()) if doc and doc.get("kind") == "InferenceService"]
    assert services
    for namespace in {doc["metadata"].get("namespace", "default") for doc in services}:
        kubectl("apply", "--validate=false", "-f", "-",
                input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))
    before = kubectl("get", "shoal", "-A", "-o", "name").stdout
    for doc in services:
        kubectl("apply", "--dry-run=server", "--validate=false", "-f", "-", input=json.dumps(doc))
    assert kubectl("get", "shoal", "-A", "-o", "name").stdout == before  # validated, nothing stored
    bad = ISVC.replace("REPLICAS", "-2")
    result = kubectl("apply", "--dry-run=server", "--validate=false", "-f", "-", input=bad, check=False)
    assert result.returncode != 0 and "spec.replicas" in result.stderr
