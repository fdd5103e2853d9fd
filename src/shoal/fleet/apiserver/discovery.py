"""Discovery documents: /api, /api/v1, /apis, /apis/<group>, /apis/<group>/<version> (pure).

kmock lists the core group as `/v1`; real servers (and kubectl, kopf) expect it under `/api` as `v1`.
"""

from __future__ import annotations

from typing import Any

from shoal.fleet.apiserver.resources import Registry

VERSION_INFO = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0-shoal-emulator", "gitCommit": "", "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "", "compiler": "emulator", "platform": "linux/amd64",
}


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.by_group_version(group, version)
    if not types and group:
        return None
    return {
        "kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [entry for rt in types for entry in rt.discovery_entries()],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def group_list(registry: Registry) -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(name, versions) for name, versions in registry.groups().items()]}


def group(registry: Registry, name: str) -> dict[str, Any] | None:
    versions = registry.groups().get(name)
    return None if not versions else {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def root_paths(registry: Registry) -> dict[str, Any]:
    paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]
    for name, versions in registry.groups().items():
        paths.append(f"/apis/{name}")
        paths += [f"/apis/{name}/{v}" for v in versions]
    return {"paths": sorted(paths)}
