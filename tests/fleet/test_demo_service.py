"""The demo applies an examples/ file, with maxReplicas capped at what this machine can add."""

from pathlib import Path

from shoal.fleet.demo import load_service
from shoal.fleet.fleet import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "local-cpu.yaml"


def test_example_is_capped_at_the_machine(tmp_path):
    svc, notes = load_service(EXAMPLE, max_replicas_cap=1, stabilization_s=20)
    assert svc["kind"] == "InferenceService"
    assert svc["spec"]["autoscaling"]["maxReplicas"] == 1
    assert svc["spec"]["autoscaling"]["minReplicas"] <= 1
    assert svc["spec"]["autoscaling"]["scaleDownStabilizationSeconds"] == 20
    assert any("maxReplicas lowered" in n for n in notes)


def test_example_within_the_cap_is_unchanged():
    svc, notes = load_service(EXAMPLE, max_replicas_cap=64, stabilization_s=None)
    original = __import__("yaml").safe_load(Path(EXAMPLE).read_text())
    assert svc["spec"] == original["spec"] and notes == []
