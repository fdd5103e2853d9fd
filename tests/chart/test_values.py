"""values.yaml and values.schema.json describe the same fields, and every field is described."""

from __future__ import annotations

import json
import re

import jsonschema
import yaml

from .conftest import CHART

VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def paths(values: dict, schema: dict, prefix: str = ""):
    """(dotted path, schema node) of every key in `values`, descending while the schema names properties."""
    for key, value in values.items():
        node = schema.get("properties", {}).get(key)
        yield f"{prefix}{key}", node
        if isinstance(value, dict) and node and "properties" in node:
            yield from paths(value, node, f"{prefix}{key}.")


def test_defaults_satisfy_the_schema():
    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)


def test_every_value_is_in_the_schema_with_a_description():
    for path, node in paths(VALUES, SCHEMA):
        assert node is not None, f"{path} is in values.yaml but not in values.schema.json"
        assert node.get("description"), f"{path} has no description in values.schema.json"


def test_every_schema_property_has_a_default_in_values():
    def walk(schema, values, prefix=""):
        for key, node in schema.get("properties", {}).items():
            if key == "global":
                continue  # Helm's own, for subcharts
            assert key in values, f"{prefix}{key} is in values.schema.json but has no default in values.yaml"
            if "properties" in node and isinstance(values[key], dict):
                walk(node, values[key], f"{prefix}{key}.")
    walk(SCHEMA, VALUES)


def undocumented_keys(text: str) -> list[str]:
    """Keys of values.yaml without a `#` comment on the line right above them. Entries of lists (example data)
    and the children of `resources` (Kubernetes' own ResourceRequirements) are not chart fields."""
    missing, stack = [], []  # stack: (indent, key) of the enclosing mappings
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)(- )?([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        in_list = match.group(2) or any(k is None for _, k in stack)
        stack.append((indent, None if match.group(2) else match.group(3)))
        if in_list or any(k == "resources" for _, k in stack[:-1]):
            continue
        above = next((l.strip() for l in reversed(lines[:i]) if l.strip()), "")
        if not above.startswith("#"):
            missing.append(".".join(k for _, k in stack if k))
    return missing


def test_every_field_is_commented_in_values_yaml():
    assert undocumented_keys(VALUES_TEXT) == []


def test_the_comment_check_finds_a_bare_key():
    assert undocumented_keys("# -- a\na: 1\nb:\n  # -- c\n  c: 2\n  d: 3\n") == ["b", "b.d"]
