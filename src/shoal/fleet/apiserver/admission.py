"""Admission of custom resources against their CRD schema: defaults, pruning, OpenAPI checks, CEL rules.

The order is the API server's: default, prune unknown fields (or reject them under strict field
validation), validate the OpenAPI constraints, then evaluate `x-kubernetes-validations` CEL rules.
Each problem comes back as a cause naming the field, e.g. `spec.autoscaling.minReplicas`.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

_ROOT_KEEP = {"apiVersion", "kind", "metadata"}


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill `default`s for absent properties, recursing into defaulted objects too (as the API server does)."""
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in (schema.get("properties") or {}):
                    value[name] = apply_defaults(extra, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def prune(schema: dict[str, Any], value: Any, path: str = "", unknown: list[str] | None = None,
          root: bool = True) -> list[str]:
    """Drop fields the schema does not declare (in place); returns their paths."""
    unknown = [] if unknown is None else unknown
    if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        return unknown
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for name in list(value):
            child = f"{path}.{name}" if path else name
            if root and name in _ROOT_KEEP:
                continue  # apiVersion, kind and metadata belong to the API machinery
            if name in properties:
                prune(properties[name], value[name], child, unknown, root=False)
            elif isinstance(extra, dict):
                prune(extra, value[name], child, unknown, root=False)
            elif extra is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                continue
            else:
                unknown.append(child)
                del value[name]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for n, item in enumerate(value):
            prune(schema["items"], item, f"{path}[{n}]", unknown, root=False)
    return unknown


def _jsonschema_causes(schema: dict[str, Any], obj: dict[str, Any]) -> list[dict[str, str]]:
    causes = []
    validator = _validator(schema)
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path)
        field = field.replace(".[", "[")
        if error.validator == "required":
            missing = error.message.split("'")[1]
            field = f"{field}.{missing}" if field else missing
            causes.append({"field": field, "reason": "FieldValueRequired", "message": "Required value"})
        else:
            causes.append({"field": field, "reason": "FieldValueInvalid", "message": error.message})
    return causes


_VALIDATORS: dict[int, tuple[dict[str, Any], Any]] = {}


def _validator(schema: dict[str, Any]) -> Any:
    """One compiled validator per schema object (the registry keeps schemas alive and unchanged)."""
    import jsonschema

    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, jsonschema.Draft7Validator(_strip_root_metadata(schema)))
        _VALIDATORS[id(schema)] = cached
    return cached[1]


def _strip_root_metadata(schema: dict[str, Any]) -> dict[str, Any]:
    """metadata is validated by the API machinery, not by the CRD's schema."""
    schema = dict(schema)
    schema["properties"] = {k: v for k, v in (schema.get("properties") or {}).items() if k != "metadata"}
    return schema


@functools.lru_cache(maxsize=256)
def _cel_program(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


@functools.lru_cache(maxsize=8192)
def _cel_verdict(rule: str, value_json: str) -> str | None:
    """None when the rule holds for this value, else why not. Cached: rules are pure, values repeat a lot."""
    import celpy

    try:
        result = _cel_program(rule).evaluate({"self": celpy.json_to_cel(json.loads(value_json))})
    except Exception as exc:  # a rule that cannot evaluate rejects, as the API server does
        return f"evaluation error: {exc}"
    return None if bool(result) else "failed"


def _cel_causes(schema: dict[str, Any], value: Any, path: str) -> list[dict[str, str]]:
    causes = []
    rules = schema.get("x-kubernetes-validations") or []
    value_json = json.dumps(value, sort_keys=True) if rules else ""
    for rule in rules:
        if "oldSelf" in rule["rule"]:
            continue  # transition rules need the stored object; creates and the tests' fixtures have none
        verdict = _cel_verdict(rule["rule"], value_json)
        if verdict is not None:
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            if verdict != "failed":
                message = f"{message} ({verdict})"
            field = path + (rule.get("fieldPath") or "")
            causes.append({"field": field.lstrip("."), "reason": "FieldValueInvalid", "message": message})
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name, sub in properties.items():
            if name in value:
                causes += _cel_causes(sub, value[name], f"{path}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for n, item in enumerate(value):
            causes += _cel_causes(schema["items"], item, f"{path}[{n}]")
    return causes


def admit(schema: dict[str, Any], obj: dict[str, Any], strict: bool = False) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Default, prune and validate a custom object. Returns (admitted object, causes); causes empty = valid."""
    obj = copy.deepcopy(obj)
    apply_defaults(schema, obj)
    unknown = prune(schema, obj)
    causes = [{"field": f, "reason": "FieldValueInvalid", "message": "field not declared in schema"}
              for f in unknown] if strict else []
    causes += _jsonschema_causes(schema, obj)
    if not causes:  # CEL rules assume a structurally valid object, as in the API server
        causes += _cel_causes(schema, obj, "")
    return obj, causes
