"""Just enough of Kubernetes' protobuf encoding for `kubectl create namespace|configmap|secret` (pure).

kubectl sends built-in kinds as protobuf when it creates them from flags. The envelope is the magic `k8s\\0`
followed by a `runtime.Unknown` (typeMeta, raw); `raw` is the object's own message. Only the kinds above are
decoded (ObjectMeta name/generateName/namespace/labels/annotations plus their data); anything else is refused
with a hint to use `kubectl apply -f`, which sends JSON.
"""

from __future__ import annotations

import base64
from typing import Any

from shoal.fleet.apiserver.errors import ApiError

MAGIC = b"k8s\x00"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> list[tuple[int, Any]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ApiError(400, "BadRequest", f"unsupported protobuf wire type {wire}")
        out.append((number, value))
    return out


def _map_entry(data: bytes) -> tuple[str, bytes]:
    entry = dict(fields(data))
    return entry.get(1, b"").decode(), entry.get(2, b"")


def _metadata(data: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for number, value in fields(data):
        if number in (1, 2, 3):
            meta[{1: "name", 2: "generateName", 3: "namespace"}[number]] = value.decode()
        elif number in (11, 12):
            key, item = _map_entry(value)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = item.decode()
    return meta


def _string_map(entries: list[bytes]) -> dict[str, str]:
    return {key: value.decode() for key, value in map(_map_entry, entries)}


def decode(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise ApiError(400, "BadRequest", "protobuf body without the k8s envelope")
    envelope = dict(fields(body[len(MAGIC):]))
    type_meta = dict(fields(envelope.get(1, b"")))
    api_version, kind = type_meta.get(1, b"").decode(), type_meta.get(2, b"").decode()
    raw = fields(envelope.get(2, b""))
    if kind not in ("Namespace", "ConfigMap", "Secret"):
        raise ApiError(415, "UnsupportedMediaType",
                       f"the emulator decodes protobuf only for Namespace, ConfigMap and Secret, not {kind}; "
                       "use `kubectl apply -f` (JSON) instead")
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": {}}
    data_entries: list[bytes] = []
    binary_entries: list[bytes] = []
    for number, value in raw:
        if number == 1:
            obj["metadata"] = _metadata(value)
        elif number == 2 and kind in ("ConfigMap", "Secret"):
            data_entries.append(value)
        elif number == 3 and kind == "ConfigMap":
            binary_entries.append(value)
        elif number == 3 and kind == "Secret":
            obj["type"] = value.decode()
    if kind == "ConfigMap":
        if data_entries:
            obj["data"] = _string_map(data_entries)
        if binary_entries:
            obj["binaryData"] = {k: base64.b64encode(v).decode() for k, v in map(_map_entry, binary_entries)}
    if kind == "Secret" and data_entries:
        obj["data"] = {k: base64.b64encode(v).decode() for k, v in map(_map_entry, data_entries)}
    return obj
