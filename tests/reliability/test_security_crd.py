"""Hostile InferenceService specs are refused at admission: every field of the CRD is bounded, and absurd counts,
negative values, oversized strings and huge maps are rejected by the CRD's OpenAPI schema and CEL rules, and by the
API emulator when a user runs `kubectl apply`, `kubectl patch` or `kubectl scale` -- with an error naming the field."""

from __future__ import annotations

import re
import subprocess

import pytest
from security_harness import (
    CRD, HOSTILE_SPECS, VALID, hostile, kubectl_env, manifest, schema_errors, unbounded_fields,
)

from shoal.fleet.apiserver.process import start_apiserver


def load_schema() -> dict:
    from security_harness import load_crd_schema

    return load_crd_schema(CRD)


def test_every_spec_field_is_bounded():
    spec = load_schema()["properties"]["spec"]
    assert unbounded_fields(spec) == []


def test_every_status_text_and_list_is_bounded():
    # status integers are counters and generations the operator writes: bounded by the API's int64, not here
    status = load_schema()["properties"]["status"]
    loose = [p for p in unbounded_fields(status, "status") if "integer" not in p and "number" not in p]
    assert loose == []


def test_bound_check_finds_what_is_unbounded():
    schema = {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 0}, "s": {"type": "string"}, "e": {"type": "string", "enum": ["a"]},
        "l": {"type": "array", "items": {"type": "string", "maxLength": 3}},
        "m": {"type": "object", "additionalProperties": {"type": "string"}}}}
    assert unbounded_fields(schema, "x") == [
        "x.n: integer without minimum and maximum", "x.s: string without maxLength", "x.l: array without maxItems",
        "x.m: map without maxProperties", "x.m.*: string without maxLength"]


def _dotted(text: str) -> str:
    return re.sub(r"\[(\d+)\]", r".\1", text)


def names_field(errors: list[str] | str, field: str) -> bool:
    """An error names `field` by its path, or by its parent's path and the field's own name quoted (how JSON
    Schema words an undeclared field)."""
    text = _dotted("\n".join(errors) if isinstance(errors, list) else errors)
    parent, _, leaf = _dotted(field).rpartition(".")
    return _dotted(field) in text or (f"{parent}: " in text and f"'{leaf}'" in text)


def test_a_valid_spec_and_one_at_every_bound_are_admitted():
    assert schema_errors(VALID) == []
    at_bounds = hostile("spec.replicas", 1000)
    at_bounds["metadata"]["name"] = "a" * 63
    at_bounds["spec"].update(nodeSelector={f"k{i}": "v" * 63 for i in range(64)},
                             tolerations=[{"key": "k" * 317, "operator": "Exists", "tolerationSeconds": 0}] * 32,
                             autoscaling={"enabled": True, "minReplicas": 0, "maxReplicas": 1000})
    assert schema_errors(at_bounds) == []


@pytest.mark.parametrize("what, path, value, field", HOSTILE_SPECS, ids=[h[0] for h in HOSTILE_SPECS])
def test_schema_refuses_hostile_spec(what, path, value, field):
    errors = schema_errors(hostile(path, value))
    assert errors, f"{what} was admitted"
    assert names_field(errors, field), errors


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("crd-security")
    with start_apiserver(workdir, manifests=(CRD,)) as api:
        env = kubectl_env(api.kubeconfig, workdir)

        def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
            return subprocess.run(["kubectl", *args], input=input, env=env, capture_output=True, text=True,
                                  timeout=60)

        created = run("apply", "--validate=false", "-f", "-", input=manifest(VALID))
        assert created.returncode == 0, created.stderr
        yield run


@pytest.mark.parametrize("what, path, value, field", HOSTILE_SPECS, ids=[h[0] for h in HOSTILE_SPECS])
def test_kubectl_apply_of_hostile_spec_is_refused(kubectl, what, path, value, field):
    obj = hostile(path, value)
    if path != "metadata.name":
        obj["metadata"]["name"] = "hostile"
    result = kubectl("apply", "--validate=false", "-f", "-", input=manifest(obj))
    if path == "spec.hostNetwork":  # without strict field validation the API server prunes what it does not know
        stored = kubectl("get", "inferenceservice", "hostile", "-o", "jsonpath={.spec}")
        assert result.returncode == 0 and '"model"' in stored.stdout and "hostNetwork" not in stored.stdout
        assert kubectl("delete", "inferenceservice", "hostile").returncode == 0
        return
    assert result.returncode != 0, f"{what} was admitted: {result.stdout}"
    assert "is invalid" in result.stderr and names_field(result.stderr, field), result.stderr[:500]
    name = obj["metadata"]["name"]
    assert "NotFound" in kubectl("get", "inferenceservice", name, "-o", "name").stderr  # nothing was stored


@pytest.mark.parametrize("patch, field", [
    ('{"spec": {"replicas": 1000000000}}', "spec.replicas"),
    ('{"spec": {"autoscaling": {"maxReplicas": -1}}}', "spec.autoscaling.maxReplicas"),
    ('{"spec": {"model": {"uri": "pvc://models/%s"}}}' % ("x" * 5000), "spec.model.uri"),
])
def test_kubectl_patch_to_hostile_spec_is_refused_and_nothing_changes(kubectl, patch, field):
    result = kubectl("patch", "inferenceservice", "chat", "--type=merge", "-p", patch)
    assert result.returncode != 0 and names_field(result.stderr, field), result.stderr[:500]
    stored = kubectl("get", "inferenceservice", "chat", "-o", "jsonpath={.spec.replicas} {.spec.model.uri}")
    assert stored.stdout == "1 pvc://models/smollm2"


def test_kubectl_scale_to_an_absurd_count_is_refused(kubectl):
    result = kubectl("scale", "inferenceservice/chat", "--replicas=1000000000")
    assert result.returncode != 0 and "spec.replicas" in result.stderr
    assert kubectl("get", "inferenceservice", "chat", "-o", "jsonpath={.spec.replicas}").stdout == "1"
