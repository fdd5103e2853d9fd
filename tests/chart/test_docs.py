"""The docs keep up with the code: every condition reason the operator can set is explained in
docs/troubleshooting.md, and every file the docs point to exists."""

from __future__ import annotations

import ast
import re

from .conftest import REPO

DOCS = ["install.md", "gitops.md", "dashboards-and-alerts.md", "upgrading-crds.md", "troubleshooting.md",
        "images.md"]


def _strings(node) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def condition_reasons(source: str) -> set[str]:
    """Reasons passed to a condition helper (its third argument or `reason=`), or put in a condition dict literal."""
    reasons = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
            if "condition" in name.lower():
                if len(node.args) >= 3:
                    reasons |= _strings(node.args[2])
                reasons |= {s for kw in node.keywords if kw.arg == "reason" for s in _strings(kw.value)}
        elif isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            if "type" in keys and "reason" in keys:
                reasons |= _strings(node.values[keys.index("reason")])
    return {r for r in reasons if re.fullmatch(r"[A-Z][A-Za-z]+", r)}


def test_every_condition_reason_is_troubleshot():
    # status.py sets Ready, Progressing and Degraded; the autoscaler's MetricsAvailable and ScalingLimited are
    # documented by their meaning, their reasons being free text of the planners.
    reasons = condition_reasons((REPO / "src" / "shoal" / "operator" / "status.py").read_text())
    assert {"ReplicasReady", "NoReadyReplicas", "ReconcileFailed"} <= reasons, "the reason finder lost its way"
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    missing = sorted(r for r in reasons if f"`{r}`" not in text)
    assert missing == [], f"docs/troubleshooting.md does not explain {missing}"


def test_reason_finder_reads_helpers_ternaries_and_dicts():
    source = ('c = _condition("Ready", ok, "Good" if ok else "Bad", "m", 1)\n'
              'd = {"type": "MetricsAvailable", "status": "False", "reason": "NoData"}\n'
              'e = set_condition(kind="X", reason="Stale")\n')
    assert condition_reasons(source) == {"Good", "Bad", "NoData", "Stale"}


def test_paths_named_in_the_docs_exist():
    named = set()
    for doc in DOCS:
        text = (REPO / "docs" / doc).read_text()
        named |= set(re.findall(r"`((?:charts|docker|examples|deploy|crds|scripts|docs|tests)/[\w./-]+)`", text))
        named |= {f"docs/{m}" for m in re.findall(r"\]\(([\w-]+\.md)\)", text)}
    assert len(named) > 10
    missing = sorted(p for p in named if not (REPO / p.rstrip("/")).exists())
    assert missing == [], missing
