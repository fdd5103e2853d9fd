"""The burn-rate alerts fire when a service breaks its SLO, stay quiet when it meets it, and the short window
silences the fast-burn alert soon after recovery (promtool's rule unit tests on synthetic engine histograms)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from .conftest import find, render

VALUES = {"prometheusRule": {"enabled": True, "services": [
    {"namespace": "ml", "name": "chat", "ttftP95Ms": 500, "itlP95Ms": 50},
    {"namespace": "ml", "name": "calm", "ttftP95Ms": 500, "itlP95Ms": 50}]}}


def series(metric, service, values, le=None):
    labels = f'namespace="ml", service="{service}", model_name="m", pod="{service}-0"'
    if le is not None:
        labels += f', le="{le}"'
    return {"series": f"{metric}{{{labels}}}", "values": values}


def expected(rules, alert, long_window):
    """The alert as promtool reports it: its rule's labels plus the by-clause labels, and its annotations."""
    (rule,) = [r for r in rules if r.get("alert") == alert and r["labels"]["long_window"] == long_window]
    return {"exp_labels": {**rule["labels"], "namespace": "ml", "service": "chat"},
            "exp_annotations": rule["annotations"]}


def test_burn_rate_alerts_follow_the_error_ratio(helm, tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package, which scripts/setup.sh installs"
    (rule,) = find(render(helm, tmp_path, VALUES), "PrometheusRule")
    groups = rule["spec"]["groups"]
    chat_rules = [r for g in groups if g["name"] == "shoal-slo.ml.chat" for r in g["rules"]]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))

    ttft, itl = "shoal:time_to_first_token_seconds", "shoal:inter_token_latency_seconds"
    input_series = [
        # chat: 100 requests a minute; for two hours 90% are slower than 500 ms, then all are fast.
        series(f"{ttft}_count", "chat", "0+100x150"),
        series(f"{ttft}_bucket", "chat", "0+10x120 1300+100x29", le="0.5"),
        # chat's ITL stays inside its SLO throughout (1% of tokens slower than 50 ms, budget 5%).
        series(f"{itl}_count", "chat", "0+100x150"),
        series(f"{itl}_bucket", "chat", "0+99x150", le="0.05"),
        # calm meets both SLOs: 2% slow.
        series(f"{ttft}_count", "calm", "0+100x150"),
        series(f"{ttft}_bucket", "calm", "0+98x150", le="0.5"),
        series(f"{itl}_count", "calm", "0+100x150"),
        series(f"{itl}_bucket", "calm", "0+98x150", le="0.05"),
        # The operator wants 3 replicas of chat, 1 is ready; calm has all it wants.
        {"series": 'shoal_operator_desired_replicas{namespace="ml", service="chat", job="shoal-operator"}',
         "values": "3x150"},
        {"series": 'shoal_operator_ready_replicas{namespace="ml", service="chat", job="shoal-operator"}',
         "values": "1x150"},
        {"series": 'shoal_operator_desired_replicas{namespace="ml", service="calm", job="shoal-operator"}',
         "values": "2x150"},
        {"series": 'shoal_operator_ready_replicas{namespace="ml", service="calm", job="shoal-operator"}',
         "values": "2x150"},
    ]
    operator_rules = [r for g in groups if g["name"] == "shoal-operator" for r in g["rules"]]
    (not_ready,) = [r for r in operator_rules if r["alert"] == "ShoalReplicasNotReady"]
    burning = "ShoalTTFTBudgetBurn"
    tests = [{
        "interval": "1m",
        "input_series": input_series,
        "alert_rule_test": [
            # In the breach: every window pair sees 90% slow requests.
            {"eval_time": "115m", "alertname": burning,
             "exp_alerts": [expected(chat_rules, burning, w) for w in ("1h", "6h", "1d", "3d")]},
            # Ten minutes after recovery the 5m short window is clean: the fast-burn page stops, slower ones hold.
            {"eval_time": "130m", "alertname": burning,
             "exp_alerts": [expected(chat_rules, burning, w) for w in ("6h", "1d", "3d")]},
            {"eval_time": "115m", "alertname": "ShoalITLBudgetBurn", "exp_alerts": []},
            # Not ready for less than `for` (15m): pending, no alert; after it: firing, for chat only.
            {"eval_time": "10m", "alertname": "ShoalReplicasNotReady", "exp_alerts": []},
            {"eval_time": "20m", "alertname": "ShoalReplicasNotReady", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "namespace": "ml", "service": "chat"},
                "exp_annotations": {
                    "summary": "ml/chat has fewer ready replicas than the operator wants",
                    "description": not_ready["annotations"]["description"]}}]},
        ],
        "promql_expr_test": [
            {"expr": 'shoal:slo_ttft_p95_seconds{service="chat"}', "eval_time": "1m",
             "exp_samples": [{"labels": 'shoal:slo_ttft_p95_seconds{namespace="ml", service="chat"}', "value": 0.5}]},
        ],
    }]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": tests}))
    result = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_tests_can_fail(helm, tmp_path):
    # The same harness must report a wrong expectation, or the test above proves nothing.
    promtool = shutil.which("promtool")
    (rule,) = find(render(helm, tmp_path, VALUES), "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    tests = [{"interval": "1m",
              "input_series": [series("shoal:time_to_first_token_seconds_count", "calm", "0+100x60"),
                               series("shoal:time_to_first_token_seconds_bucket", "calm", "0+98x60", le="0.5")],
              "alert_rule_test": [{"eval_time": "55m", "alertname": "ShoalTTFTBudgetBurn",
                                   "exp_alerts": [{"exp_labels": {"severity": "critical"}}]}]}]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": tests}))
    result = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
