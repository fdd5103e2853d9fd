"""RBAC is least privilege: no wildcards, and every call the operator makes is granted."""

from __future__ import annotations

from pathlib import Path

import yaml

from shoal.operator import kube

REPO = Path(__file__).resolve().parents[2]
DOCS = [d for d in yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()) if d]
[ROLE] = [d for d in DOCS if d["kind"] == "ClusterRole"]

# (group, resource, verb) the operator uses: reconcile writes, the controller's list+watch caches, kopf's own needs.
USED = {(k.group, k.plural, verb) for k in (kube.DEPLOYMENT, kube.SERVICE, kube.CONFIGMAP, kube.SECRET, kube.PDB,
                                          kube.SERVICEMONITOR) for verb in ("get", "list", "watch", "create", "patch")}
USED |= {("shoal.dev", "inferenceservices", v) for v in ("get", "list", "watch")}
USED |= {("shoal.dev", "inferenceservices/status", "patch"), ("", "events", "create"), ("", "pods", "list"),
         ("apiextensions.k8s.io", "customresourcedefinitions", "watch"), ("", "namespaces", "watch"),
         ("kopf.dev", "clusterkopfpeerings", "patch")}


def granted() -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in ROLE["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def test_no_wildcards_anywhere():
    for rule in ROLE["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
    assert not any("delete" in rule["verbs"] for rule in ROLE["rules"])  # children go by garbage collection


def test_every_call_is_granted():
    assert USED - granted() == set()


def test_the_spec_is_never_writable():
    assert not {v for g, r, v in granted() if r == "inferenceservices"} & {"create", "update", "patch", "delete"}


def test_binding_names_the_service_account():
    [binding] = [d for d in DOCS if d["kind"] == "ClusterRoleBinding"]
    [account] = [d for d in DOCS if d["kind"] == "ServiceAccount"]
    assert binding["roleRef"]["name"] == ROLE["metadata"]["name"]
    assert binding["subjects"][0]["name"] == account["metadata"]["name"]
