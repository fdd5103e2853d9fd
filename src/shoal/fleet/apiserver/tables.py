"""Server-side `Table` rendering, so `kubectl get` shows a CRD's additionalPrinterColumns (pure)."""

from __future__ import annotations

import datetime
import re
from typing import Any

from shoal.fleet.apiserver.resources import ResourceType

_FILTER = re.compile(r'^\[\?\(@\.([\w.]+)\s*==\s*["\']([^"\']*)["\']\)\]')
_PART = re.compile(r"^\.([\w-]+)")
_INDEX = re.compile(r"^\[(\d+)\]")


def jsonpath(obj: Any, path: str) -> Any:
    """The subset kubectl's printer columns use: `.a.b`, `[0]`, `[?(@.type=="Ready")]`."""
    nodes = [obj]
    rest = path.strip()
    while rest and nodes:
        if (match := _PART.match(rest)):
            nodes = [n[match.group(1)] for n in nodes if isinstance(n, dict) and match.group(1) in n]
        elif (match := _INDEX.match(rest)):
            idx = int(match.group(1))
            nodes = [n[idx] for n in nodes if isinstance(n, list) and len(n) > idx]
        elif (match := _FILTER.match(rest)):
            key, value = match.groups()
            nodes = [item for n in nodes if isinstance(n, list) for item in n
                     if isinstance(item, dict) and str(jsonpath(item, "." + key)) == value]
        else:
            return None
        rest = rest[match.end():]
    return nodes[0] if nodes else None


def human_age(timestamp: str | None, now: datetime.datetime | None = None) -> str:
    if not timestamp:
        return "<unknown>"
    now = now or datetime.datetime.now(datetime.timezone.utc)
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2 or (unit == "m" and seconds >= 120):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "date":
        return human_age(value)
    return value


def _ready_of(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    return f"{status.get('readyReplicas') or 0}/{(obj.get('spec') or {}).get('replicas', 0)}"


def _pod_ready(obj: dict[str, Any]) -> str:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    containers = (obj.get("spec") or {}).get("containers") or []
    return f"{sum(1 for c in statuses if c.get('ready'))}/{len(containers)}"


def _ports(obj: dict[str, Any]) -> str:
    ports = (obj.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _involved(obj: dict[str, Any]) -> str:
    ref = obj.get("involvedObject") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


# What kubectl shows for the built-in kinds people look at on the local fleet (computed cells, not JSONPath).
BUILTIN_COLUMNS: dict[tuple[str, str], list[tuple[str, str, Any]]] = {
    ("apps", "deployments"): [
        ("Ready", "string", _ready_of),
        ("Up-to-date", "integer", lambda o: (o.get("status") or {}).get("updatedReplicas") or 0),
        ("Available", "integer", lambda o: (o.get("status") or {}).get("availableReplicas") or 0)],
    ("", "pods"): [
        ("Ready", "string", _pod_ready),
        ("Status", "string", lambda o: (o.get("status") or {}).get("phase") or "Pending"),
        ("IP", "string", lambda o: (o.get("status") or {}).get("podIP") or "<none>")],
    ("", "services"): [
        ("Type", "string", lambda o: (o.get("spec") or {}).get("type") or "ClusterIP"),
        ("Cluster-IP", "string", lambda o: (o.get("spec") or {}).get("clusterIP") or "<none>"),
        ("Port(s)", "string", _ports)],
    ("", "configmaps"): [("Data", "integer", lambda o: len(o.get("data") or {}))],
    ("", "secrets"): [("Type", "string", lambda o: o.get("type") or "Opaque"),
                      ("Data", "integer", lambda o: len(o.get("data") or {}))],
    ("", "events"): [
        ("Type", "string", lambda o: o.get("type") or ""),
        ("Reason", "string", lambda o: o.get("reason") or ""),
        ("Object", "string", _involved),
        ("Message", "string", lambda o: o.get("message") or "")],
    ("policy", "poddisruptionbudgets"): [
        ("Max-Unavailable", "string", lambda o: str((o.get("spec") or {}).get("maxUnavailable", "N/A")))],
}


def has_table(rt: ResourceType) -> bool:
    return bool(rt.printer_columns) or rt.key in BUILTIN_COLUMNS


def render_table(rt: ResourceType, objects: list[dict[str, Any]], resource_version: str) -> dict[str, Any]:
    columns = [{"name": "Name", "type": "string", "format": "name", "description": "Name of the object"}]
    if rt.key in BUILTIN_COLUMNS:
        computed = BUILTIN_COLUMNS[rt.key]
        columns += [{"name": n, "type": t, "format": "", "description": n, "priority": 0} for n, t, _ in computed]
        columns.append({"name": "Age", "type": "date", "format": "", "description": "Age"})
        rows = [{"cells": [o["metadata"]["name"]] + [fn(o) for _, _, fn in computed]
                 + [human_age(o["metadata"].get("creationTimestamp"))],
                 "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}}
                for o in objects]
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
                "columnDefinitions": columns, "rows": rows}
    paths: list[tuple[str, str]] = []
    for column in rt.printer_columns:
        columns.append({"name": column["name"], "type": column.get("type", "string"),
                        "format": column.get("format", ""), "description": column.get("description", ""),
                        "priority": column.get("priority", 0)})
        paths.append((column["jsonPath"], column.get("type", "string")))
    if not any(c["jsonPath"] == ".metadata.creationTimestamp" for c in rt.printer_columns):
        columns.append({"name": "Age", "type": "date", "format": "", "description": "Age"})
        paths.append((".metadata.creationTimestamp", "date"))
    rows = []
    for obj in objects:
        meta = obj["metadata"]
        rows.append({
            "cells": [meta["name"]] + [_cell(jsonpath(obj, p), kind) for p, kind in paths],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta},
        })
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": columns, "rows": rows}
