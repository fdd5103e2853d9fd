"""Every series the dashboard and the alerts query exists in the engine's or the operator's live registry, with
the labels the query matches on; the alert thresholds sit on real histogram buckets; promtool accepts the PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from .conftest import CHART, ALL_ON, find
from .promql_names import metric_names, selectors
from .registries import exposed_series, histogram_bounds

# Labels Prometheus attaches to every scraped engine series (relabeling: DESIGN.md "Metrics").
TARGET_LABELS = {"namespace", "service", "pod", "job", "instance", "container", "endpoint"}
DASHBOARD = json.loads((CHART / "dashboards" / "shoal.json").read_text())
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$")


@pytest.fixture(scope="module")
def engine_registry():
    from shoal.engine.server.metrics import EngineMetrics
    return EngineMetrics("smollm2-135m-instruct").registry


@pytest.fixture(scope="module")
def known_series(engine_registry):
    from shoal.operator.metrics import OperatorMetrics
    series = exposed_series(engine_registry)
    operator = exposed_series(OperatorMetrics().registry)
    assert not set(series) & set(operator), "engine and operator registries must not share a series name"
    return {**series, **operator}


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every templating variable query."""
    out = []
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for var in DASHBOARD["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append((f"variable {var['name']}", query))
    return out


def rule_queries(rendered) -> tuple[list[tuple[str, str]], set[str]]:
    """(where, PromQL) of every rendered rule, and the series names the rules record themselves."""
    (rule,) = find(rendered, "PrometheusRule")
    out, recorded = [], set()
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            out.append((f"{group['name']}/{r.get('alert') or r.get('record')}", r["expr"]))
            if "record" in r:
                recorded.add(r["record"])
    return out, recorded


def contract_violations(queries, known, recorded) -> list[str]:
    problems = []
    for where, expr in queries:
        match = LABEL_VALUES.match(expr.strip())
        wanted_label = None
        if match:
            expr, wanted_label = match.groups()
        for name, labels in selectors(expr):
            if name in recorded:
                continue  # produced by the chart's own rules, whose inputs are checked like any query
            if name not in known:
                problems.append(f"{where}: {name} is in neither registry")
                continue
            if known[name].labels is None:
                continue  # its label names show only once a child exists
            extra = labels - known[name].labels - TARGET_LABELS
            if extra:
                problems.append(f"{where}: {name} has no label {sorted(extra)}")
            if wanted_label and wanted_label not in known[name].labels | TARGET_LABELS:
                problems.append(f"{where}: {name} has no label {wanted_label}")
    return problems


def test_dashboard_and_alerts_query_only_existing_series(known_series, rendered_all_on):
    rules, recorded = rule_queries(rendered_all_on)
    queries = dashboard_queries() + rules
    assert len(queries) > 20
    assert contract_violations(queries, known_series, recorded) == []


def test_dashboard_reads_the_recorded_slo_only_from_the_chart_rules(rendered_all_on):
    _, recorded = rule_queries(rendered_all_on)
    used = set().union(*(metric_names(q) for _, q in dashboard_queries()))
    assert {"shoal:slo_ttft_p95_seconds", "shoal:slo_itl_p95_seconds"} <= recorded
    assert used & recorded <= {"shoal:slo_ttft_p95_seconds", "shoal:slo_itl_p95_seconds"}


def test_the_contract_check_catches_typos_and_wrong_labels(known_series):
    bad = [("typo", "sum(shoal:num_requests_waitin{service=\"a\"})"),
           ("label", "sum(rate(shoal:request_success_total{finished_reasons=\"stop\"}[5m]))"),
           ("suffix", "rate(shoal:time_to_first_token_seconds[5m])"),
           ("template label", "label_values(shoal:num_requests_running, servce)")]
    problems = contract_violations(bad, known_series, set())
    assert [p.split(":")[0] for p in problems] == ["typo", "label", "suffix", "template label"]


def test_dashboard_covers_every_promised_signal():
    used = set().union(*(metric_names(q) for _, q in dashboard_queries()))
    for series in ("shoal:time_to_first_token_seconds_bucket", "shoal:inter_token_latency_seconds_bucket",
                   "shoal:runtime_max_num_seqs", "shoal:runtime_max_num_batched_tokens",
                   "shoal:kv_cache_usage_perc", "shoal:num_requests_waiting", "shoal:num_preemptions_total",
                   "shoal:generation_tokens_total", "shoal:slo_ttft_p95_seconds", "shoal:slo_itl_p95_seconds",
                   "shoal_operator_desired_replicas", "shoal_operator_ready_replicas"):
        assert series in used, f"the dashboard shows no {series}"
    titles = {p["title"] for p in DASHBOARD["panels"]}
    assert {"TTFT p95 vs SLO", "ITL p95 vs SLO", "Replicas", "Runtime batch limits", "KV cache usage",
            "Requests waiting and running", "Preemptions", "Tokens per second"} <= titles


def _template_buckets_ms(name: str) -> list[float]:
    text = (CHART / "templates" / "_slo.tpl").read_text()
    body = re.search(r'define "%s" -}}\s*(.*?)\s*{{- end' % re.escape(name), text, re.S).group(1)
    return [float(x) for x in body.split()]


@pytest.mark.parametrize("helper,family", [("shoal.ttftBucketsMs", "shoal:time_to_first_token_seconds"),
                                           ("shoal.itlBucketsMs", "shoal:inter_token_latency_seconds")])
def test_chart_bucket_lists_match_the_engine_histograms(engine_registry, helper, family):
    assert [ms / 1000 for ms in _template_buckets_ms(helper)] == pytest.approx(
        histogram_bounds(engine_registry, family), rel=1e-12)


def test_rendered_thresholds_select_existing_buckets(engine_registry, rendered_all_on):
    (rule,) = find(rendered_all_on, "PrometheusRule")
    bounds = {"shoal:time_to_first_token_seconds": histogram_bounds(engine_registry, "shoal:time_to_first_token_seconds"),
              "shoal:inter_token_latency_seconds": histogram_bounds(engine_registry, "shoal:inter_token_latency_seconds")}
    matched = 0
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            for family, le in re.findall(r'(shoal:\w+)_bucket\{[^}]*le=~"([^"]+)"', r["expr"]):
                pattern = le.replace("\\\\", "\\")  # PromQL string escapes -> regex
                # prometheus-client writes bounds with Python's float repr ("0.5", "1.0").
                hits = [b for b in bounds[family] if re.fullmatch(pattern, repr(b))]
                assert len(hits) == 1, f"{r.get('alert')}: le=~{le!r} matches {hits}"
                matched += 1
    assert matched >= 8


@pytest.fixture(scope="module")
def promtool():
    path = shutil.which("promtool")
    assert path, "promtool comes with Debian's prometheus package, which scripts/setup.sh installs"
    return path


def test_promtool_accepts_the_rules(promtool, rendered_all_on, tmp_path):
    (rule,) = find(rendered_all_on, "PrometheusRule")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_dashboard_queries(promtool, tmp_path):
    # Grafana's variables replaced by what Grafana would put there; each query checked as a recording rule.
    rules = []
    for i, (where, expr) in enumerate(dashboard_queries()):
        match = LABEL_VALUES.match(expr.strip())
        expr = match.group(1) if match else expr
        expr = expr.replace("$__rate_interval", "1m").replace("$namespace", "ml").replace("$service", "chat")
        assert "$" not in expr, f"{where}: unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    rules_file = tmp_path / "dashboard.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_control_loop_queries_the_same_contract(known_series):
    # The operator's own PromQL (what MetricsAvailable depends on) reads the same series the chart relies on.
    from shoal.operator.prometheus import service_queries

    queries = [(f"control loop {k}", q) for k, q in service_queries("ml", "chat").items()]
    assert queries
    assert contract_violations(queries, known_series, set()) == []
