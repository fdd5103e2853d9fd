"""Pods as rendered -- the operator's from `helm template` (default values and every option on), the engines' from
the operator's own builder (every example plus the widest spec the CRD admits) -- run non-root with a read-only root
filesystem, no privilege escalation, seccomp RuntimeDefault, all capabilities dropped, and no host namespace, path or
port; the RBAC has no wildcard and no verb beyond the operator's job. Extends tests/chart/test_security.py's checks
(hardening_problems, wildcard_problems) with host paths and ports and the riskier RBAC grants."""

from __future__ import annotations

import pytest
import yaml
from security_harness import (
    CRD, REPO, VALID, engine_deployments, pod_problems, rbac_problems, render_chart, schema_errors,
)

from chart.conftest import ALL_ON, run_helm


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, list[dict]]:
    return {"default": render_chart(tmp_path_factory.mktemp("default")),
            "all-on": render_chart(tmp_path_factory.mktemp("all-on"), ALL_ON)}


@pytest.mark.parametrize("values", ["default", "all-on"])
def test_operator_pod_is_hardened_and_has_no_host_access(rendered, values):
    objects = rendered[values]
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert len(deployments) == 1
    assert pod_problems(objects) == []
    spec = deployments[0]["spec"]["template"]["spec"]
    container = spec["containers"][0]["securityContext"]
    assert (container["runAsNonRoot"], container["readOnlyRootFilesystem"], container["allowPrivilegeEscalation"]) \
        == (True, True, False)
    assert container["capabilities"]["drop"] == ["ALL"] and container["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["securityContext"]["runAsUser"] > 0


@pytest.mark.parametrize("values", ["default", "all-on"])
def test_rendered_rbac_grants_no_wildcard_and_nothing_risky(rendered, values):
    roles = [o for o in rendered[values] if o["kind"] in ("ClusterRole", "Role")]
    assert roles and all(r["rules"] for r in roles)
    assert rbac_problems(rendered[values]) == []


def test_shipped_rbac_manifest_grants_nothing_risky():
    docs = [d for d in yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()) if d]
    assert any(d["kind"] == "ClusterRole" for d in docs)
    assert rbac_problems(docs) == []


def test_rbac_check_catches_risky_grants():
    role = {"kind": "ClusterRole", "metadata": {"name": "r"}, "rules": [
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["escalate"]},
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]},
        {"apiGroups": ["*"], "resources": ["secrets"], "verbs": ["get"]}]}
    found = "\n".join(rbac_problems([role]))
    for expected in ("escalate", "touches RBAC", "exec", "writes pods", "wildcard in apiGroups"):
        assert expected in found


def test_pod_check_catches_host_access():
    spec = {"hostNetwork": True, "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}],
                            "securityContext": {"procMount": "Unmasked"}}]}
    found = "\n".join(pod_problems([{"kind": "Pod", "metadata": {"name": "p"}, "spec": spec}]))
    for expected in ("host namespace", "hostPath", "hostPort", "/proc", "runAsNonRoot"):
        assert expected in found


def test_engine_pods_from_every_example_are_hardened():
    deployments = engine_deployments()
    assert len(deployments) >= 6
    for example, deployment in deployments:
        assert pod_problems([deployment]) == [], example
        spec = deployment["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False, example  # engines never call the Kubernetes API
        assert not any(k in spec for k in ("hostNetwork", "hostPID", "hostIPC"))


def widest_admitted_spec() -> dict:
    """The most a user may ask for within the CRD: GPUs, a node-local file:// model, node selectors, tolerations."""
    obj = yaml.safe_load(yaml.safe_dump(VALID))
    obj["metadata"].update(namespace="ml", uid="00000000-0000-0000-0000-000000000002")
    obj["spec"].update(model={"name": "m", "uri": "file:///models/m"}, resources={"gpus": 16},
                       image="registry.example/engine:1", nodeSelector={"gpu": "h100"},
                       tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                       engine={"drainTimeoutSeconds": 3600}, replicas=1000)
    assert schema_errors(obj) == []
    return obj


def test_engine_pod_of_the_widest_admitted_spec_is_hardened():
    from chart.crd_validation import apply_defaults, load_crd_schema

    from shoal.operator.builders import build_deployment
    from shoal.operator.config import OperatorConfig, ServiceSpec

    isvc = apply_defaults(load_crd_schema(CRD), widest_admitted_spec())
    spec = ServiceSpec.from_body(isvc["spec"])
    deployment = build_deployment(isvc, spec, OperatorConfig(all_namespaces=True), replicas=spec.replicas)
    assert pod_problems([deployment]) == []
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert all(set(v) & {"configMap", "secret", "emptyDir", "persistentVolumeClaim"} for v in volumes), volumes


@pytest.mark.parametrize("override", [{"runAsUser": 0}, {"runAsGroup": 0}])
def test_chart_refuses_to_render_a_root_operator(tmp_path, override):
    from chart.conftest import CHART, HELM

    render_chart(tmp_path)  # fetches helm when missing
    result = run_helm(HELM, "template", "shoal", str(CHART), values={"operator": override}, tmp_path=tmp_path,
                      check=False)
    assert result.returncode != 0 and next(iter(override)) in result.stderr
