"""The scale subresource: an autoscaling/v1 Scale view of an object, and writing replicas back (pure)."""

from __future__ import annotations

import copy
from typing import Any

from shoal.fleet.apiserver import selectors
from shoal.fleet.apiserver.resources import ScalePaths


def path_get(obj: dict[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def scale_view(paths: ScalePaths, obj: dict[str, Any]) -> dict[str, Any]:
    if paths.label_selector:
        selector = path_get(obj, paths.label_selector) or ""
    else:  # Deployments, ReplicaSets, StatefulSets: from the object's own selector
        selector = selectors.selector_string(path_get(obj, ".spec.selector.matchLabels"))
    meta = obj["metadata"]
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": path_get(obj, paths.spec_replicas) or 0},
        "status": {"replicas": path_get(obj, paths.status_replicas) or 0, "selector": selector},
    }


def with_replicas(paths: ScalePaths, obj: dict[str, Any], replicas: int) -> dict[str, Any]:
    """A copy of `obj` with its spec replicas set (the stored object is never edited in place)."""
    new = copy.deepcopy(obj)
    node = new
    parts = paths.spec_replicas.strip(".").split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = replicas
    return new
