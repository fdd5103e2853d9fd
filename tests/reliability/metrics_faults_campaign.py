"""The real operator (kopf over HTTP, against the API emulator) reading a real Prometheus through the fault proxy.

`OperatorUnderFaults` runs one idle service of three ready engines. `episode(fault)` scales it to 3, injects the
fault, watches several control periods (the replicas must stay at 3, status must say MetricsAvailable=False with the
fault's reason), then clears it and waits for MetricsAvailable=True and -- the control that makes the hold mean
something -- the scale-down to 1 that the true data (an idle fleet) asks for. Used by test_metrics_operator_faults.py
and bench/reliability_metrics_security.py.
"""

from __future__ import annotations

import base64
import calendar
import math
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from metrics_faults_harness import (
    EXPECTED_REASON, REPO, Api, FaultProxy, IdleEngine, condition, running_prometheus, targets, wait_for,
)

sys.path.insert(0, str(REPO / "tests" / "autoscale"))
from standin import StandinEngine  # noqa: E402

from shoal.fleet.apiserver.process import start_apiserver  # noqa: E402

CRD = REPO / "crds" / "inferenceservice.yaml"
NS = "default"
ISVC = f"/apis/shoal.dev/v1alpha1/namespaces/{NS}/inferenceservices"
DEPLOY = f"/apis/apps/v1/namespaces/{NS}/deployments"
HELD = 3  # replicas the idle service is scaled to before each fault


@dataclass
class Episode:
    fault: str
    ticks: int = 0  # control-loop decisions taken while the fault was on
    held: int = 0  # of those: replicas held at HELD and MetricsAvailable=False with the fault's reason
    wrong_scale: int = 0  # observations of the Deployment below HELD while the fault was on
    batch_changes: int = 0  # status.batch or the runtime ConfigMap changed while the fault was on
    reason: str = ""
    detect_s: float = 0.0  # fault on -> service at 3 and MetricsAvailable=False
    recover_s: float = 0.0  # fault off -> MetricsAvailable=True
    scaled_down_s: float = 0.0  # fault off -> the Deployment at 1 (the data's own decision)
    notes: list[str] = field(default_factory=list)


def _epoch(stamp: str) -> int:
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


class OperatorUnderFaults:
    def __init__(self, workdir: Path, period_s: float = 1.0):
        self.workdir, self.period_s = workdir, period_s
        self._stack = ExitStack()

    def __enter__(self) -> OperatorUnderFaults:
        stack = self._stack
        self.engines = [IdleEngine() for _ in range(HELD)]
        stack.callback(lambda: [e.stop() for e in self.engines])
        self.busy = StandinEngine(token=None, ttft_s=2.0, itl_s=0.045)  # breaches both SLOs: tuner and scaler act
        stack.callback(self.busy.close)
        api_process = stack.enter_context(start_apiserver(self.workdir, manifests=(CRD,)))
        busy_target = [(f"127.0.0.1:{self.busy.port}", {"namespace": NS, "service": "busy", "pod": "busy-0"})]
        prom_url = stack.enter_context(running_prometheus(self.workdir, targets(self.engines, NS, "idle")
                                                          + busy_target))
        self.proxy = FaultProxy(prom_url)
        stack.callback(self.proxy.close)
        previous = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(api_process.kubeconfig)
        stack.callback(lambda: os.environ.pop("KUBECONFIG") if previous is None
                       else os.environ.__setitem__("KUBECONFIG", previous))
        from shoal.operator.config import OperatorConfig
        from shoal.operator.main import OperatorThread

        config = OperatorConfig(engine_image="registry.example/shoal-engine:test", all_namespaces=True,
                                liveness_port=None, metrics_port=None, standalone=True, resync_seconds=1.0,
                                prometheus_url=self.proxy.url, control_period_s=self.period_s)
        operator = OperatorThread(config).start()
        stack.callback(operator.stop)
        self.api = Api(api_process.url)
        self._create("idle", {"enabled": True, "minReplicas": 1, "maxReplicas": 4,
                              "scaleDownStabilizationSeconds": 0})
        wait_for(lambda: self.api.get(f"{DEPLOY}/idle"), what="the idle service's Deployment")
        self._mark_ready("idle", self.replicas())
        wait_for(lambda: (condition(self.isvc(), "MetricsAvailable") or {}).get("status") == "True", timeout=45,
                 what="the idle service's metrics in Prometheus")
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _create(self, name: str, autoscaling: dict) -> None:
        body = {"apiVersion": "shoal.dev/v1alpha1", "kind": "InferenceService", "metadata": {"name": name},
                "spec": {"model": {"name": "m", "uri": "pvc://models/m"}, "resources": {"gpus": 0},
                         "slo": {"ttftP95Ms": 500, "itlP95Ms": 50}, "batchTuning": {"enabled": True},
                         "autoscaling": autoscaling}}
        status, answer = self.api.call("POST", ISVC, body, "application/json")
        assert status == 201, answer

    def isvc(self, name: str = "idle") -> dict:
        return self.api.get(f"{ISVC}/{name}") or {}

    def replicas(self, name: str = "idle") -> int:
        return int(((self.api.get(f"{DEPLOY}/{name}") or {}).get("spec") or {}).get("replicas") or 0)

    def _mark_ready(self, name: str, ready: int) -> None:
        self.api.call("PATCH", f"{DEPLOY}/{name}/status", {"status": {"replicas": ready, "readyReplicas": ready}})

    def _scale_to_held(self) -> None:
        """Put the idle service at HELD replicas, all ready, as if an earlier load had scaled it up (the autoscaler
        owns the count through status.desiredReplicas and its state). Done once a decision taken after the patch
        says HELD: a tick that read the old count before the patch may still write it back, and is retried."""
        for _ in range(5):
            patched = time.time()
            # a capacity learned under that earlier load, so that true idle data asks for a scale-down
            self.api.call("PATCH", f"{ISVC}/idle/status", {"status": {
                "desiredReplicas": HELD, "autoscaling": {"planner": {"capacityRps": 5.0}}}})
            self.api.call("PATCH", f"{DEPLOY}/idle", {"spec": {"replicas": HELD}})
            self._mark_ready("idle", HELD)
            try:
                decision = wait_for(lambda: (d := self._decision()) and _epoch(d["time"]) >= math.ceil(patched)
                                    and d, timeout=15 * self.period_s, what="a decision after the patch")
            except AssertionError:
                continue
            if decision["replicas"] == HELD and self.replicas() == HELD:
                return
        raise AssertionError("could not put the idle service at 3 replicas")

    def _decision(self) -> dict | None:
        return ((self.isvc().get("status") or {}).get("autoscaling") or {}).get("lastDecision")

    def episode(self, fault: str, watch_periods: int = 4) -> Episode:
        ep = Episode(fault, reason=EXPECTED_REASON[fault])
        self.proxy.set(None if fault == "engine_down" else fault)
        if fault == "engine_down":  # a real partial scrape: one of the three engines drops off the network
            self.engines[-1].stop()
        started = time.monotonic()
        try:
            self._scale_to_held()  # under the fault: an idle fleet it cannot see must stay at 3
            cond = wait_for(lambda: (c := condition(self.isvc(), "MetricsAvailable")) and c["status"] == "False"
                            and c["reason"] == ep.reason and c, timeout=30, what=f"MetricsAvailable=False ({fault})")
            ep.detect_s = time.monotonic() - started
            self._watch(ep, watch_periods)
        finally:
            cleared = time.monotonic()
            self.proxy.set(None)
            if fault == "engine_down":
                self.engines[-1].start()
        wait_for(lambda: (condition(self.isvc(), "MetricsAvailable") or {}).get("status") == "True", timeout=30,
                 what=f"MetricsAvailable=True after {fault}")
        ep.recover_s = time.monotonic() - cleared
        wait_for(lambda: self.replicas() == 1, timeout=30, what=f"the scale-down to 1 after {fault} cleared")
        self._mark_ready("idle", 1)
        ep.scaled_down_s = time.monotonic() - cleared
        ep.notes.append(cond["message"][:200])
        return ep

    def _watch(self, ep: Episode, periods: int) -> None:
        """Poll through `periods` control periods; count the decisions taken and any change they made."""
        batch_before = self.isvc()["status"].get("batch", {})
        runtime_before = (self.api.get(f"/api/v1/namespaces/{NS}/configmaps/idle-runtime") or {}).get("data")
        seen: set[str] = set()
        deadline = time.monotonic() + periods * self.period_s + 0.5
        while time.monotonic() < deadline:
            isvc, replicas = self.isvc(), self.replicas()
            decision = isvc["status"]["autoscaling"]["lastDecision"]
            cond = condition(isvc, "MetricsAvailable")
            if replicas < HELD:
                ep.wrong_scale += 1
            key = decision["time"] + decision["reason"]
            if key not in seen:
                seen.add(key)
                ep.ticks += 1
                if (decision["replicas"] == HELD and "no data" in decision["reason"] and replicas == HELD
                        and cond["status"] == "False" and cond["reason"] == ep.reason):
                    ep.held += 1
            time.sleep(0.1)
        batch_after = self.isvc()["status"].get("batch", {})
        runtime_after = (self.api.get(f"/api/v1/namespaces/{NS}/configmaps/idle-runtime") or {}).get("data")
        keys = ("maxNumSeqs", "maxNumBatchedTokens")
        if [batch_before.get(k) for k in keys] != [batch_after.get(k) for k in keys] or runtime_before != runtime_after:
            ep.batch_changes += 1

    def busy_service_under(self, fault: str, periods: int = 4) -> dict:
        """Create a breaching service while `fault` is on: no scale-up and no retune may happen blind; once the
        fault clears, it scales up (the control). Returns what was seen during the fault."""
        self.proxy.set(fault)
        try:
            self._create("busy", {"enabled": True, "minReplicas": 1, "maxReplicas": 3})
            wait_for(lambda: self.api.get(f"{DEPLOY}/busy"), what="the busy service's Deployment")
            secret = wait_for(lambda: self.api.get(f"/api/v1/namespaces/{NS}/secrets/busy-admin-token"),
                              what="the busy service's admin Secret")
            self.busy.token = base64.b64decode(secret["data"]["token"]).decode()
            self._run_pod("busy", self.busy.port)
            self._mark_ready("busy", 1)
            wait_for(lambda: (condition(self.isvc("busy"), "MetricsAvailable") or {}).get("status") == "False",
                     what="the busy service's MetricsAvailable=False")
            time.sleep(periods * self.period_s)
            during = {"replicas": self.replicas("busy"), "patches": len(self.busy.patches),
                      "runtime": self.api.get(f"/api/v1/namespaces/{NS}/configmaps/busy-runtime")["data"]}
        finally:
            self.proxy.set(None)
        # the control: with the data back the breach is acted on (whether the tuner also retunes is its call)
        wait_for(lambda: self.replicas("busy") >= 2, what="the scale-up once the data is back")
        return during

    def _run_pod(self, service: str, port: int) -> None:
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{service}-0", "labels": {"shoal.dev/service": service}},
               "spec": {"containers": [{"name": "engine", "image": "x",
                                        "ports": [{"name": "http", "containerPort": port}]}]}}
        status, answer = self.api.call("POST", f"/api/v1/namespaces/{NS}/pods", pod, "application/json")
        assert status == 201, answer
        self.api.call("PATCH", f"/api/v1/namespaces/{NS}/pods/{service}-0/status", {"status": {
            "phase": "Running", "podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}})
