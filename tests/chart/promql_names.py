"""Which series a PromQL expression reads: metric names and the label names each selector matches on.

A small reader, not a parser: enough for the chart's own expressions (checked for syntax by promtool elsewhere).
"""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_SELECTOR = re.compile(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
             "offset", "inf", "nan", "Inf", "NaN"}


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) for every instant or range selector in `expr`."""
    text = _GROUPING.sub(" ", expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations, Grafana's $__rate_interval
    text = _blank_strings_outside_braces(text)
    found = []
    for match in _SELECTOR.finditer(text):
        name, braces = match.group(1), match.group(2)
        after = text[match.end():].lstrip()
        if name in _KEYWORDS or (braces is None and after.startswith("(")):
            continue  # a keyword, or a function / aggregation call
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", _STRING.sub('""', braces or "")))
        found.append((name, labels))
    return found


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in selectors(expr)}


def _blank_strings_outside_braces(text: str) -> str:
    """Strings outside selectors (e.g. label_replace arguments) blanked, so their words are not taken as names."""
    out, depth, i = [], 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if depth == 0 and ch in "\"'":
            match = _STRING.match(text, i)
            if match:
                out.append('""')
                i = match.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)
