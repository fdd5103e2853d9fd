"""The three patch flavours of the Kubernetes API: JSON merge, strategic merge, JSON patch (pure)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from shoal.fleet.apiserver.errors import ApiError

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"

# List fields that built-in types merge by a key instead of replacing (the common ones in pod specs).
_MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
               "volumeMounts": "mountPath", "ports": None, "imagePullSecrets": "name", "conditions": "type"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _port_key(item: dict[str, Any]) -> Any:
    return (item.get("containerPort", item.get("port")), item.get("protocol", "TCP"))


def _merge_list(field: str, target: list[Any], patch: list[Any]) -> list[Any]:
    if field not in _MERGE_KEYS or not all(isinstance(i, dict) for i in patch + target):
        return copy.deepcopy(patch)
    key_name = _MERGE_KEYS[field]
    key = _port_key if key_name is None else (lambda item: item.get(key_name))
    result = [copy.deepcopy(item) for item in target]
    index = {key(item): n for n, item in enumerate(result)}
    for item in patch:
        if item.get("$patch") == "delete":
            result = [existing for existing in result if key(existing) != key(item)]
            index = {key(existing): n for n, existing in enumerate(result)}
        elif key(item) in index:
            result[index[key(item)]] = strategic_merge_patch(result[index[key(item)]], item)
        else:
            index[key(item)] = len(result)
            result.append(strategic_merge_patch({}, item))
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge as kubectl apply sends it, for the list fields built-in types merge by key."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key.startswith("$retainKeys") or key == "$patch":
            continue  # ordering and retain directives change no content here
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in value]
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], value)
        elif isinstance(value, list):
            result[key] = [strategic_merge_patch({}, v) if isinstance(v, dict) else v for v in value]
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def apply_patch(content_type: str, target: dict[str, Any], body: Any) -> dict[str, Any]:
    kind = content_type.split(";")[0].strip()
    if kind == MERGE:
        return merge_patch(target, body)
    if kind == STRATEGIC:
        return strategic_merge_patch(target, body)
    if kind == JSON_PATCH:
        try:
            return jsonpatch.apply_patch(target, body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise ApiError(422, "Invalid", f"the JSON patch could not be applied: {exc}") from exc
    if kind == APPLY:
        raise ApiError(415, "UnsupportedMediaType",
                       "server-side apply is not emulated; use client-side `kubectl apply` (the default)")
    raise ApiError(415, "UnsupportedMediaType", f"the patch content type {kind!r} is not supported")
