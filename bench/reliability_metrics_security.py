"""Issue 9 campaign: metrics faults and security. Records `metrics_faults` and `security` in
bench/results/reliability.json through bench/reliability_record.py, and prints the rows.

metrics_faults -- a real Prometheus scraping idle engines, behind the fault proxy of tests/reliability:
  adapter rows: every fault kind, `--reads` reads each through the Prometheus adapter and the planners; survived =
    no data with the expected failure kind, replicas and batch limits held, MetricsAvailable=False with the
    expected reason; data lost = a read that let a number through or changed replicas or limits.
  operator rows: the real operator (kopf over HTTP, API emulator) with an idle service at 3 replicas, every fault
    kind `--repeats` times; faults injected = control-loop decisions taken under the fault; survived = those that
    held 3 replicas with the condition's expected reason; data lost = Deployment observations below 3 plus batch
    limit changes under the fault. After each fault the service must recover and scale down on the true data.
security -- admin tokens (unit forms and a live `shoal serve` at DEBUG), hostile specs (CRD schema and kubectl
  against the emulator), rendered pods and RBAC rules; data lost = a token accepted or logged, a hostile spec
  stored, a hardening or RBAC problem.

    .venv/bin/python bench/reliability_metrics_security.py [--reads 20] [--repeats 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "reliability"), str(REPO / "bench")]

from reliability_record import record  # noqa: E402


def adapter_rows(reads: int) -> list[dict]:
    from metrics_faults_harness import (
        EXPECTED_REASON, FAULTS, FaultProxy, IdleEngine, decide, expected_kinds, idle_and_complete, read_metrics,
        running_prometheus, targets, wait_for,
    )

    engines = [IdleEngine() for _ in range(3)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, running_prometheus(Path(tmp), targets(engines, "ml", "chat")) as url:
        proxy = FaultProxy(url)
        wait_for(lambda: idle_and_complete(read_metrics(proxy.url, "ml", "chat")[0], 3), timeout=45,
                 what="the engines in Prometheus")
        control = [decide(read_metrics(proxy.url, "ml", "chat")[0])[0].replicas for _ in range(3)]
        rows.append({"scenario": "adapter: no fault (control: idle data scales 3 -> 1)", "faults_injected": 0,
                     "survived": 0, "data_lost": 0, "scaled_down_reads": sum(r == 1 for r in control)})
        for fault in FAULTS:
            survived = lost = 0
            seconds = []
            for _ in range(reads):
                proxy.set(fault)
                try:
                    m, took = read_metrics(proxy.url, "ml", "chat")
                finally:
                    proxy.set(None)
                seconds.append(took)
                rdec, bdec, cond = decide(m)
                leaked = any(getattr(m, f) is not None for f in m.failures)
                if rdec.replicas != 3 or bdec.changed or leaked:
                    lost += 1
                elif m.failures == expected_kinds(fault) and cond[:2] == ("False", EXPECTED_REASON[fault]):
                    survived += 1
            rows.append({"scenario": f"adapter: {fault}", "faults_injected": reads, "survived": survived,
                         "data_lost": lost, "reason": EXPECTED_REASON[fault],
                         "mean_read_s": round(mean(seconds), 3)})
        proxy.close()
    for engine in engines:
        engine.stop()
    return rows


def operator_rows(repeats: int) -> list[dict]:
    from metrics_faults_campaign import OperatorUnderFaults
    from metrics_faults_harness import FAULTS

    rows = []
    with tempfile.TemporaryDirectory() as tmp, OperatorUnderFaults(Path(tmp)) as fleet:
        fleet.proxy.slow_s = 8.0  # beyond the operator's 5 s Prometheus timeout
        during = fleet.busy_service_under("down")
        rows.append({"scenario": "operator: breaching service created while Prometheus is down",
                     "faults_injected": 1, "survived": int(during["replicas"] == 1 and during["patches"] == 0),
                     "data_lost": int(during["replicas"] != 1) + during["patches"],
                     "note": "scaled up only after recovery"})
        for fault in (*FAULTS, "engine_down"):
            episodes = [fleet.episode(fault, watch_periods=12 if fault == "slow" else 4) for _ in range(repeats)]
            rows.append({
                "scenario": f"operator: {fault}", "faults_injected": sum(e.ticks for e in episodes),
                "survived": sum(e.held for e in episodes),
                "data_lost": sum(e.wrong_scale + e.batch_changes for e in episodes),
                "episodes": repeats, "reason": episodes[0].reason,
                "detect_s": round(mean(e.detect_s for e in episodes), 1),
                "recover_s": round(mean(e.recover_s for e in episodes), 1),
                "scale_down_after_s": round(mean(e.scaled_down_s for e in episodes), 1),
            })
            print(rows[-1], flush=True)
    return rows


def security_rows() -> list[dict]:
    import security_harness as sh

    from shoal.engine.server import admin
    from shoal.engine.server.errors import APIError
    from shoal.fleet.apiserver.process import start_apiserver

    rows = []
    token = sh.new_token()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "token"
        path.write_text(token)
        refused = 0
        for header in sh.wrong_headers(token).values():
            try:
                admin.check_bearer(header, path)
            except APIError as exc:
                refused += exc.status == 401
        forms = len(sh.wrong_headers(token))
        rows.append({"scenario": "admin: missing/wrong/malformed tokens (check_bearer)", "faults_injected": forms,
                     "survived": refused, "data_lost": forms - refused})
        probe = sh.probe_serve_log(Path(tmp))
        bad = {k: v for k, v in probe.statuses.items() if k not in ("right GET", "right PATCH", "token on another route")}
        rows.append({"scenario": "admin: live shoal serve at DEBUG, tokens in the log", "faults_injected": len(bad),
                     "survived": sum(400 <= s < 500 for s in bad.values()) if not probe.leaks() else 0,
                     "data_lost": len(probe.leaks()) + sum(s < 400 or s >= 500 for s in bad.values()),
                     "log_bytes": len(probe.log)})

        hostile = sh.HOSTILE_SPECS
        schema_refused = sum(bool(sh.schema_errors(sh.hostile(p, v))) for _, p, v, _ in hostile)
        rows.append({"scenario": "CRD schema: hostile specs", "faults_injected": len(hostile),
                     "survived": schema_refused, "data_lost": len(hostile) - schema_refused})
        with start_apiserver(Path(tmp), manifests=(sh.CRD,)) as api:
            env = sh.kubectl_env(api.kubeconfig, Path(tmp))
            stored = 0
            for _, p, v, _ in hostile:
                obj = sh.hostile(p, v)
                subprocess.run(["kubectl", "apply", "--validate=false", "-f", "-"], input=sh.manifest(obj), env=env,
                               capture_output=True, text=True, timeout=60)
                got = subprocess.run(["kubectl", "get", "inferenceservice", obj["metadata"]["name"], "-o",
                                      "jsonpath={.spec}"], env=env, capture_output=True, text=True, timeout=60)
                # stored at all counts as lost, except an unknown field the server pruned (stored without it)
                if got.returncode == 0 and not (p == "spec.hostNetwork" and "hostNetwork" not in got.stdout):
                    stored += 1
                subprocess.run(["kubectl", "delete", "inferenceservice", obj["metadata"]["name"], "--ignore-not-found"],
                               env=env, capture_output=True, timeout=60)
            rows.append({"scenario": "API emulator (kubectl apply): hostile specs", "faults_injected": len(hostile),
                         "survived": len(hostile) - stored, "data_lost": stored})

        from chart.conftest import ALL_ON

        all_on = Path(tmp) / "all-on"
        all_on.mkdir()
        objects = sh.render_chart(Path(tmp)) + sh.render_chart(all_on, ALL_ON)
        pods = list(sh.pod_specs(objects)) + [(e, d["spec"]["template"]["spec"]) for e, d in sh.engine_deployments()]
        problems = [len(sh.pod_problems([{"kind": "Pod", "metadata": {"name": n}, "spec": s}])) for n, s in pods]
        rows.append({"scenario": "rendered pods (operator chart x2, engine per example)", "faults_injected": len(pods),
                     "survived": problems.count(0), "data_lost": sum(problems)})
        roles = [o for o in objects if o["kind"] in ("ClusterRole", "Role")]
        rules = sum(len(r["rules"]) for r in roles)
        rbac = len(sh.rbac_problems(objects))
        rows.append({"scenario": "RBAC rules (chart, default and all options)", "faults_injected": rules,
                     "survived": rules - rbac, "data_lost": rbac})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reads", type=int, default=20, help="adapter reads per fault kind")
    parser.add_argument("--repeats", type=int, default=2, help="operator episodes per fault kind")
    args = parser.parse_args()
    started = time.monotonic()
    metrics = adapter_rows(args.reads) + operator_rows(args.repeats)
    record("metrics_faults", metrics)
    security = security_rows()
    record("security", security)
    for row in metrics + security:
        print(row)
    print(f"campaign took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
