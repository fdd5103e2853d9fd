"""Label and field selectors, as the Kubernetes API parses them (pure functions)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shoal.fleet.apiserver.errors import ApiError

_SET_RE = re.compile(r"^\s*(!?)([^\s!=,()]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([^\s!=,()]+)\s*(==|=|!=)\s*([^\s,()]*)\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        return not present


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses: `a in (x,y),b` -> [`a in (x,y)`, `b`]."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    if not text:
        return ()
    requirements = []
    for part in _split_top_level(text):
        eq = _EQ_RE.match(part)
        if eq:
            key, op, value = eq.groups()
            requirements.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
            continue
        match = _SET_RE.match(part)
        if not match:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r} in labelSelector")
        negated, key, op, values = match.groups()
        if op:
            requirements.append(Requirement(key, op, tuple(v.strip() for v in values.split(",") if v.strip())))
        else:
            requirements.append(Requirement(key, "!exists" if negated else "exists"))
    return tuple(requirements)


def parse_field_selector(text: str | None) -> tuple[tuple[str, str, str], ...]:
    """`metadata.name=x,status.phase!=Running` -> ((path, op, value), ...)."""
    if not text:
        return ()
    result = []
    for part in text.split(","):
        match = _EQ_RE.match(part)
        if not match:
            raise ApiError(400, "BadRequest", f"invalid field selector: {part!r}")
        path, op, value = match.groups()
        result.append((path, "!=" if op == "!=" else "=", value))
    return tuple(result)


def field_value(obj: dict[str, Any], path: str) -> str | None:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return None if node is None else str(node)


def matches(obj: dict[str, Any], labels: tuple[Requirement, ...], fields: tuple[tuple[str, str, str], ...]) -> bool:
    if labels:
        obj_labels = obj.get("metadata", {}).get("labels") or {}
        if not all(requirement.matches(obj_labels) for requirement in labels):
            return False
    for path, op, value in fields:
        actual = field_value(obj, path) or ""
        if (actual == value) != (op == "="):
            return False
    return True


def selector_string(match_labels: dict[str, str] | None) -> str:
    """The string form of a `matchLabels` selector, as the scale subresource reports it."""
    return ",".join(f"{key}={value}" for key, value in sorted((match_labels or {}).items()))
