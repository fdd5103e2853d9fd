"""Shared fixtures of the chart tests: the Helm binary, rendering the chart, the repository's paths."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "shoal"
HELM = REPO / ".tools" / "helm"

# Every optional feature of the chart switched on.
ALL_ON = {
    "metrics": {"serviceMonitor": {"enabled": True}},
    "engineMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True, "services": [
        {"namespace": "ml", "name": "chat", "ttftP95Ms": 500, "itlP95Ms": 50},
        {"namespace": "ml", "name": "batch", "ttftP95Ms": 5000, "itlP95Ms": 100, "objective": 0.9,
         }]},
    "dashboard": {"enabled": True},
    "operator": {"watchNamespaces": ["ml", "dev"], "imagePullSecrets": [{"name": "regcred"}],
                 "nodeSelector": {"kubernetes.io/os": "linux"}, "podAnnotations": {"a": "b"}},
}
# The default burn rates cannot all fire with a 0.9 objective (14.4 x 0.1 > 1), so ALL_ON uses reachable ones.
ALL_ON["prometheusRule"]["burnRates"] = [
    {"severity": "critical", "longWindow": "1h", "shortWindow": "5m", "factor": 6},
    {"severity": "warning", "longWindow": "6h", "shortWindow": "30m", "factor": 3},
]


@pytest.fixture(scope="session")
def helm() -> Path:
    """Helm v3.17.2 from scripts/fetch_helm.sh (make setup runs it; idempotent, so run it here as well)."""
    subprocess.run(["bash", str(REPO / "scripts" / "fetch_helm.sh")], check=True, capture_output=True)
    return HELM


def run_helm(helm: Path, *args: str, values: dict | None = None, tmp_path: Path | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(helm), *args]
    if values is not None:
        assert tmp_path is not None, "values need a tmp_path to be written to"
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        cmd += ["-f", str(values_file)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result


class StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (PyYAML keeps the last silently; kubectl may refuse them)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        duplicates = {k for k in keys if keys.count(k) > 1}
        if duplicates:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {sorted(duplicates)}",
                                                    node.start_mark)
        return super().construct_mapping(node, deep=deep)


def render(helm: Path, tmp_path: Path, values: dict | None = None) -> list[dict]:
    """The chart's templates rendered by `helm template`, as a list of objects (duplicate keys refused)."""
    out = run_helm(helm, "template", "shoal", str(CHART), "--namespace", "shoal-system",
                   values=values or {}, tmp_path=tmp_path).stdout
    return [doc for doc in yaml.load_all(out, Loader=StrictLoader) if doc]


def find(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


@pytest.fixture(scope="session")
def rendered_default(helm, tmp_path_factory) -> list[dict]:
    return render(helm, tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="session")
def rendered_all_on(helm, tmp_path_factory) -> list[dict]:
    return render(helm, tmp_path_factory.mktemp("all-on"), ALL_ON)
