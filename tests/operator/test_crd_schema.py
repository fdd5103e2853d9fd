"""The CRD is the single source of the API: examples validate against it (OpenAPI schema through jsonschema,
x-kubernetes-validations through cel-python), invalid specs are rejected with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shoal.fleet.apiserver.admission import admit

REPO = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((REPO / "crds" / "inferenceservice.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))


def inference_services(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc.get("kind") == "InferenceService"]


def test_there_are_examples_to_check():
    assert EXAMPLES, "examples/*.yaml is empty"
    assert sum(len(inference_services(p)) for p in EXAMPLES) >= len(EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path):
    for doc in inference_services(path):
        admitted, causes = admit(SCHEMA, doc, strict=True)
        assert causes == [], f"{path.name}: {causes}"
        assert admitted["spec"]["engine"]["maxNumSeqs"] >= 1  # defaults filled where the example is silent


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_spec_is_rejected_naming_the_field(path):
    expected = path.read_text().splitlines()[0].removeprefix("# expect:").strip()
    [doc] = inference_services(path)
    _, causes = admit(SCHEMA, doc, strict=True)
    assert expected in [c["field"] for c in causes], f"{path.name}: {causes}"


def test_crd_names_columns_and_subresources():
    assert CRD["spec"]["names"]["shortNames"] == ["shoal"]
    assert [c["name"].upper() for c in VERSION["additionalPrinterColumns"]] == [
        "READY", "REPLICAS", "TTFT-P95", "ITL-P95", "MAX-SEQS", "AGE"]
    assert VERSION["subresources"] == {"status": {}, "scale": {
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector"}}


def _walk(node: dict, path: str):
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural_and_spec_fields_are_described():
    for path, node in _walk(SCHEMA, ""):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
    spec = SCHEMA["properties"]["spec"]
    for path, node in _walk(spec, "spec"):
        is_leaf_of_free_map = path.endswith("{}") or path.startswith("spec.tolerations[]")
        if not is_leaf_of_free_map:
            assert node.get("description"), f"{path} has no description"
