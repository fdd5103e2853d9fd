"""The chart lints clean and renders valid Kubernetes objects, with defaults and with every optional feature on."""

from __future__ import annotations

import json
import subprocess

import kubernetes_validate
import pytest
import yaml

from .conftest import ALL_ON, CHART, REPO, find, render, run_helm

# The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion ">=X.Y.Z-0") and the newest the validator knows.
OLDEST = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"].removeprefix(">=").removesuffix("-0")
KUBERNETES_VERSIONS = [OLDEST, kubernetes_validate.latest_version()]
# Kinds whose schema is not part of Kubernetes: prometheus-operator's (checked by promtool and their own tests)
# and kopf's peering objects (their CRDs ship in the chart's crds/, validated below).
MONITORING = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
NON_CORE = MONITORING | {"ClusterKopfPeering", "KopfPeering"}


@pytest.mark.parametrize("values", [{}, ALL_ON], ids=["defaults", "all-on"])
def test_helm_lint_is_clean(helm, tmp_path, values):
    result = run_helm(helm, "lint", str(CHART), "--strict", values=values, tmp_path=tmp_path)
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize("rendered", ["rendered_default", "rendered_all_on"])
@pytest.mark.parametrize("k8s_version", KUBERNETES_VERSIONS)
def test_rendered_core_objects_pass_strict_validation(request, rendered, k8s_version):
    objects = request.getfixturevalue(rendered)
    core = [o for o in objects if o["kind"] not in NON_CORE]
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"} <= {o["kind"] for o in core}
    for obj in core:
        kubernetes_validate.validate(obj, k8s_version, strict=True)


@pytest.mark.parametrize("k8s_version", KUBERNETES_VERSIONS)
def test_chart_crds_pass_strict_validation(k8s_version):
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(obj, k8s_version, strict=True)


def test_the_validator_rejects_what_it_should(rendered_default):
    (deployment,) = find(rendered_default, "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_every_optional_feature_renders(rendered_default, rendered_all_on):
    default_kinds = {o["kind"] for o in rendered_default}
    all_kinds = {o["kind"] for o in rendered_all_on}
    assert not default_kinds & MONITORING, "monitoring objects need prometheus-operator: off by default"
    assert MONITORING <= all_kinds


def test_chart_crds_are_byte_identical_to_crds_dir():
    sources = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert sources
    for name in sources:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), name
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == sorted(sources + ["kopf-peering.yaml"])
    check = subprocess.run(["bash", str(REPO / "scripts" / "sync_chart_crds.sh"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_chart_peering_crds_are_verbatim_from_deploy():
    # Only the CRD documents: crds/ may hold nothing else; the peering object is a template.
    source = (REPO / "deploy" / "kopf-peering.yaml").read_text()
    copy = (CHART / "crds" / "kopf-peering.yaml").read_text()
    source_crds = [d for d in yaml.safe_load_all(source) if d and d["kind"] == "CustomResourceDefinition"]
    assert [d for d in yaml.safe_load_all(copy) if d] == source_crds and len(source_crds) == 2
    for document in copy.split("---\n"):
        assert document in source


def test_sync_script_repairs_a_drifted_copy(tmp_path):
    # A copy of the relevant tree, so the real chart is never touched.
    for rel in ("scripts/sync_chart_crds.sh", "crds", "deploy", "charts/shoal/crds"):
        src = REPO / rel
        subprocess.run(["mkdir", "-p", str((tmp_path / rel).parent)], check=True)
        subprocess.run(["cp", "-r", str(src), str(tmp_path / rel)], check=True)
    copy = tmp_path / "charts/shoal/crds/inferenceservice.yaml"
    copy.write_text(copy.read_text() + "# hand edit\n")
    (tmp_path / "charts/shoal/crds/stale.yaml").write_text("{}\n")
    script = tmp_path / "scripts/sync_chart_crds.sh"
    check = subprocess.run(["bash", str(script), "--check"], capture_output=True, text=True)
    assert check.returncode == 1 and "differs" in check.stderr and "stale.yaml" in check.stderr
    (tmp_path / "charts/shoal/crds/kopf-peering.yaml").unlink()
    subprocess.run(["bash", str(script)], check=True)
    assert copy.read_bytes() == (tmp_path / "crds" / copy.name).read_bytes()
    assert not (tmp_path / "charts/shoal/crds/stale.yaml").exists()
    assert (tmp_path / "charts/shoal/crds/kopf-peering.yaml").read_bytes() == \
        (CHART / "crds" / "kopf-peering.yaml").read_bytes()
    assert subprocess.run(["bash", str(script), "--check"]).returncode == 0


@pytest.mark.parametrize("values,field", [
    ({"operator": {"replicas": -1}}, "operator.replicas"),
    ({"operator": {"unknown": 1}}, "unknown"),
    ({"operator": {"runAsUser": 0}}, "operator.runAsUser"),
    ({"prometheusRule": {"objective": 1.5}}, "prometheusRule.objective"),
    ({"engineMonitor": {"enabled": True, "interval": "often"}}, "engineMonitor.interval"),
], ids=["negative replicas", "unknown field", "root user", "objective > 1", "bad duration"])
def test_values_schema_rejects_bad_values(helm, tmp_path, values, field):
    result = run_helm(helm, "template", "shoal", str(CHART), values=values, tmp_path=tmp_path, check=False)
    assert result.returncode != 0
    assert field in result.stderr


def test_slo_threshold_off_the_histogram_buckets_is_refused(helm, tmp_path):
    values = {"prometheusRule": {"enabled": True, "services": [
        {"namespace": "ml", "name": "chat", "ttftP95Ms": 450, "itlP95Ms": 50}]}}
    result = run_helm(helm, "template", "shoal", str(CHART), values=values, tmp_path=tmp_path, check=False)
    assert result.returncode != 0
    assert "prometheusRule.services[0].ttftP95Ms=450" in result.stderr and "500" in result.stderr


def test_unreachable_burn_rate_is_refused(helm, tmp_path):
    values = {"prometheusRule": {"enabled": True, "objective": 0.9, "services": [
        {"namespace": "ml", "name": "chat", "ttftP95Ms": 500, "itlP95Ms": 50}]}}
    result = run_helm(helm, "template", "shoal", str(CHART), values=values, tmp_path=tmp_path, check=False)
    assert result.returncode != 0 and "prometheusRule.burnRates[0].factor" in result.stderr


def test_operator_args_follow_values(helm, tmp_path, rendered_default, rendered_all_on):
    def args(objects):
        (deployment,) = find(objects, "Deployment")
        return deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args(rendered_default)
    all_on = args(rendered_all_on)
    assert "--namespace=ml" in all_on and "--namespace=dev" in all_on and "--all-namespaces" not in all_on
    assert any(a.startswith("--engine-image=shoal/engine:") for a in all_on)


def test_chart_packages_with_its_crds_and_dashboard(helm, tmp_path):
    import tarfile

    run_helm(helm, "package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("shoal-*.tgz")
    names = set(tarfile.open(archive).getnames())
    for expected in ("shoal/Chart.yaml", "shoal/values.schema.json", "shoal/crds/inferenceservice.yaml",
                     "shoal/crds/kopf-peering.yaml", "shoal/dashboards/shoal.json", "shoal/templates/NOTES.txt"):
        assert expected in names


def test_rendering_refuses_duplicate_keys():
    from .conftest import StrictLoader

    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate keys"):
        yaml.load("metadata:\n  labels: {a: '1'}\n  labels: {b: '2'}\n", Loader=StrictLoader)
