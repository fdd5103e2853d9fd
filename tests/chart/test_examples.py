"""Every InferenceService in examples/ is admitted by the CRD (schema, defaults, CEL); broken ones are not."""

from __future__ import annotations

import copy

import pytest
import yaml

from .conftest import REPO
from .crd_validation import load_crd_schema, validation_errors

CRD = REPO / "crds" / "inferenceservice.yaml"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def inference_services(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "InferenceService"]


@pytest.fixture(scope="module")
def schema():
    return load_crd_schema(CRD)


def test_the_promised_examples_exist():
    names = {p.name for p in EXAMPLES}
    for expected in ("minimal.yaml", "slo-tuned.yaml", "multi-gpu.yaml", "local-cpu.yaml",
                     "autoscaling-off-hpa.yaml", "autoscaling-off-keda.yaml"):
        assert expected in names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_admitted(schema, path):
    services = inference_services(path)
    assert services, f"{path.name} holds no InferenceService"
    for obj in services:
        assert obj["apiVersion"] == "shoal.dev/v1alpha1"
        assert validation_errors(schema, obj) == [], path.name


def test_local_cpu_example_runs_without_gpus(schema):
    (obj,) = inference_services(REPO / "examples" / "local-cpu.yaml")
    assert obj["spec"]["resources"]["gpus"] == 0
    assert obj["spec"]["model"]["uri"].startswith("file:///")


def test_autoscaling_off_examples_target_the_scale_subresource():
    for name in ("autoscaling-off-hpa.yaml", "autoscaling-off-keda.yaml"):
        docs = [d for d in yaml.safe_load_all((REPO / "examples" / name).read_text()) if d]
        (service,) = [d for d in docs if d["kind"] == "InferenceService"]
        (scaler,) = [d for d in docs if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
        assert service["spec"]["autoscaling"]["enabled"] is False
        assert scaler["spec"]["scaleTargetRef"] == {
            "apiVersion": "shoal.dev/v1alpha1", "kind": "InferenceService", "name": service["metadata"]["name"]}


# Each breakage must be refused, with the offending field named in the message.
BROKEN = [
    ("unknown field", lambda s: s.update(replicaz=3), "replicaz"),
    ("negative replicas", lambda s: s.update(replicas=-1), "replicas"),
    ("min > max replicas", lambda s: s.update(autoscaling={"minReplicas": 5, "maxReplicas": 2}), "minReplicas"),
    ("zero SLO", lambda s: s.update(slo={"ttftP95Ms": 0}), "ttftP95Ms"),
    ("bad uri scheme", lambda s: s["model"].update(uri="s3://bucket/x"), "uri"),
    ("token budget below block", lambda s: s.update(engine={"maxNumBatchedTokens": 8, "blockSize": 16}),
     "maxNumBatchedTokens"),
    ("missing model", lambda s: s.pop("model"), "model"),
]


@pytest.mark.parametrize("what,breaks,field", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_specs_are_refused(schema, what, breaks, field):
    (obj,) = inference_services(REPO / "examples" / "minimal.yaml")
    obj = copy.deepcopy(obj)
    breaks(obj["spec"])
    errors = validation_errors(schema, obj)
    assert errors, f"{what} was admitted"
    assert any(field in e for e in errors), errors


def test_core_objects_in_examples_pass_strict_validation():
    import kubernetes_validate

    core = [d for p in EXAMPLES for d in yaml.safe_load_all(p.read_text())
            if d and d["apiVersion"] in ("autoscaling/v2", "v1", "apps/v1")]
    assert core, "the HPA example holds a core object"
    for obj in core:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
