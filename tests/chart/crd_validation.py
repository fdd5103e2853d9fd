"""Validate an object against a CRD the way the API server does: defaults, structural schema, then CEL rules.

The API server applies `default`s before validating, prunes or (with kubectl's strict field validation) rejects
fields the schema does not declare, checks the OpenAPI constraints, then evaluates `x-kubernetes-validations`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import celpy
import jsonschema
import yaml

# OpenAPI keys that jsonschema does not know; dropped before handing the schema over.
_K8S_KEYS = {"x-kubernetes-validations", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-list-type",
             "x-kubernetes-list-map-keys", "x-kubernetes-int-or-string", "x-kubernetes-embedded-resource"}


def load_crd_schema(crd_path: Path, version: str = "v1alpha1") -> dict:
    crd = yaml.safe_load(crd_path.read_text())
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(f"{crd_path} has no version {version}")


def apply_defaults(schema: dict, value):
    """A copy of `value` with the schema's defaults filled in, as the API server does before validation."""
    value = copy.deepcopy(value)
    _default_into(schema, value)
    return value


def _default_into(schema: dict, value) -> None:
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _default_into(sub, value[key])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _default_into(schema["items"], item)


def strict_json_schema(schema: dict) -> dict:
    """The OpenAPI schema as JSON Schema where undeclared fields are errors (kubectl's strict field validation)."""
    out = {k: v for k, v in schema.items() if k not in _K8S_KEYS}
    if "properties" in out:
        out["properties"] = {k: strict_json_schema(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict_json_schema(out["additionalProperties"])
    if "items" in out:
        out["items"] = strict_json_schema(out["items"])
    return out


def cel_errors(schema: dict, value, path: str = "") -> list[str]:
    """Messages of every x-kubernetes-validations rule that `value` breaks, found depth-first."""
    errors = []
    env = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        if not bool(program.evaluate({"self": celpy.json_to_cel(value)})):
            errors.append(f"{path or '<root>'}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors += cel_errors(sub, value[key], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += cel_errors(schema["items"], item, f"{path}[{i}]")
    return errors


def validation_errors(schema: dict, obj: dict) -> list[str]:
    """Every reason the API server would refuse `obj` (empty when it is admitted)."""
    defaulted = apply_defaults(schema, obj)
    validator = jsonschema.Draft7Validator(strict_json_schema(schema))
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
              for e in validator.iter_errors(defaulted)]
    return errors or cel_errors(schema, defaulted)  # CEL only runs on objects that pass the schema
