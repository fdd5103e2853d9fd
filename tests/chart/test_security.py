"""Least privilege: no wildcard in the rendered RBAC, the same rules as deploy/rbac.yaml, and every pod spec
(the operator's from the chart, the engine's from the operator's builder) non-root without privilege escalation."""

from __future__ import annotations

import pytest

from .conftest import find


def pod_specs(objects):
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            yield obj["metadata"]["name"], obj["spec"]


def hardening_problems(name: str, spec: dict) -> list[str]:
    """Why a pod spec could run as root, escalate, or write its root filesystem (empty when it cannot)."""
    problems = []
    pod_ctx = spec.get("securityContext", {})
    if spec.get("hostPID") or spec.get("hostNetwork") or spec.get("hostIPC"):
        problems.append(f"{name}: shares a host namespace")
    for c in spec.get("initContainers", []) + spec["containers"]:
        ctx = c.get("securityContext", {})
        where = f"{name}/{c['name']}"
        run_as_non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
        uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
        if run_as_non_root is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if uid == 0:
            problems.append(f"{where}: runAsUser is 0")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if ctx.get("privileged"):
            problems.append(f"{where}: privileged")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: root filesystem is writable")
        if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
            problems.append(f"{where}: capabilities not dropped")
        if ctx.get("capabilities", {}).get("add"):
            problems.append(f"{where}: adds capabilities")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: no seccomp profile")
    return problems


def wildcard_problems(objects) -> list[str]:
    problems = []
    for obj in objects:
        if obj["kind"] in ("ClusterRole", "Role"):
            for i, rule in enumerate(obj.get("rules", [])):
                for key in ("verbs", "resources", "apiGroups", "nonResourceURLs", "resourceNames"):
                    if any("*" in item for item in rule.get(key, [])):
                        problems.append(f"{obj['kind']} {obj['metadata']['name']} rule {i}: wildcard in {key}")
            if obj.get("aggregationRule"):
                problems.append(f"{obj['metadata']['name']}: aggregated role (rules come from elsewhere)")
    return problems


@pytest.mark.parametrize("rendered", ["rendered_default", "rendered_all_on"])
def test_rendered_rbac_has_no_wildcards(request, rendered):
    objects = request.getfixturevalue(rendered)
    (role,) = find(objects, "ClusterRole")
    assert role["rules"], "the ClusterRole grants nothing"
    assert wildcard_problems(objects) == []


def test_rbac_binds_only_the_operator_account(rendered_default):
    (binding,) = find(rendered_default, "ClusterRoleBinding")
    (account,) = find(rendered_default, "ServiceAccount")
    (role,) = find(rendered_default, "ClusterRole")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": "shoal-system"}]
    (deployment,) = find(rendered_default, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def normalized_rules(role: dict) -> set:
    """A role's grants as (apiGroup, resource, verb) triples: equal sets grant exactly the same."""
    return {(group, resource, verb) for rule in role["rules"] for group in rule.get("apiGroups", [])
            for resource in rule.get("resources", []) for verb in rule.get("verbs", [])}


def test_chart_rbac_equals_deploy_rbac(rendered_default):
    import yaml

    from .conftest import REPO

    (deploy_role,) = [d for d in yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text())
                      if d and d["kind"] == "ClusterRole"]
    (chart_role,) = find(rendered_default, "ClusterRole")
    assert normalized_rules(chart_role) == normalized_rules(deploy_role)
    assert wildcard_problems([deploy_role]) == []


def test_wildcard_check_catches_wildcards():
    role = {"kind": "ClusterRole", "metadata": {"name": "r"},
            "rules": [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]},
                      {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}]}
    assert len(wildcard_problems([role])) == 2


@pytest.mark.parametrize("rendered", ["rendered_default", "rendered_all_on"])
def test_operator_pod_is_hardened(request, rendered):
    specs = list(pod_specs(request.getfixturevalue(rendered)))
    assert len(specs) == 1
    for name, spec in specs:
        assert hardening_problems(name, spec) == []
        assert spec["securityContext"]["runAsUser"] != 0
        container = spec["containers"][0]
        assert {"livenessProbe", "readinessProbe", "startupProbe", "resources"} <= set(container)
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_hardening_check_catches_a_root_pod():
    spec = {"containers": [{"name": "c", "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": True}}]}
    found = "\n".join(hardening_problems("p", spec))
    for expected in ("runAsNonRoot", "runAsUser is 0", "allowPrivilegeEscalation", "writable", "capabilities",
                     "seccomp"):
        assert expected in found


def engine_deployments():
    """The engine Deployment the operator's builder makes for every InferenceService in examples/."""
    import yaml

    from shoal.operator.builders import build_deployment
    from shoal.operator.config import OperatorConfig, ServiceSpec

    from .conftest import REPO
    from .crd_validation import apply_defaults, load_crd_schema

    schema = load_crd_schema(REPO / "crds" / "inferenceservice.yaml")
    config = OperatorConfig(all_namespaces=True)
    out = []
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "InferenceService":
                isvc = apply_defaults(schema, doc)  # as the API server stores it
                isvc["metadata"].setdefault("namespace", "default")
                isvc["metadata"]["uid"] = "00000000-0000-0000-0000-000000000001"
                spec = ServiceSpec.from_body(isvc["spec"])
                out.append((path.name, build_deployment(isvc, spec, config, replicas=spec.replicas)))
    return out


def test_engine_pods_built_by_the_operator_are_hardened():
    deployments = engine_deployments()
    assert len(deployments) >= 6
    for example, deployment in deployments:
        for name, spec in pod_specs([deployment]):
            assert hardening_problems(f"{example}:{name}", spec) == []


def test_engine_deployments_pass_strict_validation():
    import kubernetes_validate

    for example, deployment in engine_deployments():
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)
