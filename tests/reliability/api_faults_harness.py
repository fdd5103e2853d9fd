"""Shared parts of the API-fault and operator-crash checks (tests/reliability/test_api_*, test_crash_*, and
bench/reliability_api.py): the emulator with faults, the real operator as its own process (`shoal operator`, real
kopf over HTTP), a seeded workload of InferenceService changes, and the verdict on the children."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # http_json: the JSON client and poller the test areas share
from api_faults_verdict import ISVCS, Verdict, verdict, wait_converged  # noqa: E402, F401  (crash_harness uses them)
from http_json import Http, wait_for  # noqa: E402, F401  (wait_for: crash_harness and the tests use it)
from k8s_objects import SERVICEMONITOR_CRD  # noqa: E402  (also imported by crash_harness)

CRD = REPO / "crds" / "inferenceservice.yaml"
DRIVER_AGENT = "shoal-reliability-driver"  # the harness's own calls: never faulted
OPERATOR_AGENTS = ("kopf", "shoal-operator")  # the operator's two clients (kopf's watches, its own writes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api(Http):
    """Plain JSON calls to the emulator, as a user or a kubelet would make them; never faulted (DRIVER_AGENT)."""

    def __init__(self, url: str):
        super().__init__(url, user_agent=DRIVER_AGENT, timeout=30.0)


# -- the operator as a process -----------------------------------------------------------------------------
# `shoal operator` with its imports done first, then started by a line on stdin (a crash test restarts it quickly)
PREWARMED = ("import sys, kopf, aiohttp, shoal.cli, shoal.operator.main; sys.stdin.readline(); "
             "sys.exit(shoal.cli.main(sys.argv[1:]))")


class OperatorProcess:
    """`shoal operator` in its own process, identified by the bearer token of its own kubeconfig. `prewarmed`: the
    process imports everything, then waits for `go()` (the operator code and command line are the same)."""

    def __init__(self, workdir: Path, api_url: str, token: str, prometheus_url: str | None = None,
                 control_period_s: float = 1.0, namespace: str | None = None, prewarmed: bool = False):
        from shoal.fleet.apiserver import kubeconfig_text

        self.token = token
        self.metrics_port = free_port()
        kubeconfig = workdir / f"kubeconfig-{token}"
        kubeconfig.write_text(kubeconfig_text(api_url, token=token))
        scope = ["--namespace", namespace] if namespace else ["--all-namespaces"]
        launcher = ["-c", PREWARMED] if prewarmed else ["-m", "shoal"]
        command = [sys.executable, *launcher, "operator", *scope, "--standalone",
                   "--liveness-port", "0", "--metrics-port", str(self.metrics_port),
                   "--control-period", str(control_period_s)]
        if prometheus_url:
            command += ["--prometheus-url", prometheus_url]
        self.log_path = workdir / f"operator-{token}.log"
        env = dict(os.environ, KUBECONFIG=str(kubeconfig))
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.PIPE if prewarmed else subprocess.DEVNULL)

    def go(self) -> "OperatorProcess":
        """Start a prewarmed operator."""
        self.process.stdin.write(b"go\n")
        self.process.stdin.close()
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def metric(self, name: str) -> float:
        """A sample of the operator's /metrics (0 when absent or not served yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and (line[len(name)] in " {"))

    def reconciles(self) -> int:
        return int(self.metric("shoal_operator_reconcile_duration_seconds_count"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])


# -- the workload ------------------------------------------------------------------------------------------
def isvc_body(name: str, rng: random.Random) -> dict:
    return {"apiVersion": "shoal.dev/v1alpha1", "kind": "InferenceService", "metadata": {"name": name},
            "spec": {"model": {"name": "smollm2", "uri": "pvc://models/smollm2"}, "resources": {"gpus": 0},
                     "replicas": rng.randint(0, 3), "autoscaling": {"enabled": False},
                     "batchTuning": {"enabled": False}}}


def random_update(rng: random.Random) -> dict:
    """One spec change a user or a GitOps pipeline makes; each bumps the generation."""
    choice = rng.randrange(5)
    if choice == 0:
        return {"spec": {"replicas": rng.randint(0, 4)}}
    if choice == 1:
        return {"spec": {"engine": {"maxNumSeqs": rng.choice([16, 32, 64, 128, 256])}}}
    if choice == 2:
        return {"spec": {"image": f"registry.example/shoal-engine:{rng.randint(1, 50)}"}}
    if choice == 3:
        return {"spec": {"nodeSelector": {"pool": f"p{rng.randint(0, 3)}"} if rng.random() < 0.7 else None}}
    return {"spec": {"resources": {"cpu": str(rng.randint(1, 8))}}}


@dataclass
class WorkloadCounts:
    creates: int = 0
    updates: int = 0
    deletes: int = 0

    @property
    def changes(self) -> int:
        return self.creates + self.updates + self.deletes


def run_workload(api: Api, changes: int, seed: int, namespaces: tuple[str, ...], pool: int,
                 pace_s: float = 0.0, until: Callable[[], bool] = lambda: True,
                 max_changes: int | None = None) -> WorkloadCounts:
    """At least `changes` creates, updates and deletes of InferenceServices over a pool of names (seeded), and
    more until `until()` holds (checked every 10 changes, up to `max_changes`): every change asks for a reconcile.
    Deleted names come back later, as new objects with new uids."""
    rng = random.Random(seed)
    live: set[tuple[str, str]] = set()
    names = [(ns, f"svc-{i:03d}") for i in range(pool) for ns in namespaces][:pool]
    counts = WorkloadCounts()
    limit = max_changes or changes * 10

    def more() -> bool:
        if counts.changes < changes:
            return True
        return counts.changes < limit and (counts.changes % 10 != 0 or not until())

    while more():
        ns, name = rng.choice(names)
        path = f"/apis/shoal.dev/v1alpha1/namespaces/{ns}/inferenceservices"
        if (ns, name) not in live:
            api.create(path, isvc_body(name, rng))
            live.add((ns, name))
            counts.creates += 1
        elif rng.random() < 0.15:
            status, answer = api.call("DELETE", f"{path}/{name}")
            assert status == 200, answer
            live.discard((ns, name))
            counts.deletes += 1
        else:
            status, answer = api.call("PATCH", f"{path}/{name}", random_update(rng))
            assert status == 200, answer
            counts.updates += 1
        if pace_s:
            time.sleep(pace_s)
    return counts


def create_namespaces(api: Api, namespaces: tuple[str, ...]) -> None:
    for ns in namespaces:
        api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})


def fault_report(api: Api) -> dict:
    return api.get("/debug/faults")


def faults_config(rate: float, seed: int, watch_drop: float, hang_s: float = 0.5, watch_drop_after_s: float = 5.0):
    """`rate` of the operator's calls fail (409/429/500/timeout evenly); `watch_drop` of its watch streams are cut."""
    import dataclasses

    from shoal.fleet.apiserver import FaultConfig

    uniform = FaultConfig.uniform(rate, seed=seed, hang_s=hang_s, watch_drop_after_s=watch_drop_after_s,
                                  user_agents=OPERATOR_AGENTS)
    return dataclasses.replace(uniform, watch_drop=watch_drop)


@dataclass
class FaultRun:
    changes: WorkloadCounts
    reconciles: int
    faults: dict
    verdict: Verdict
    seconds_to_converge: float
    seconds: float

    def row(self, scenario: str) -> dict:
        injected = int(self.faults["total"])
        ok = self.verdict.clean
        return {"scenario": scenario, "faults_injected": injected, "survived": injected if ok else 0,
                "data_lost": self.verdict.lost(), "duplicates": len(self.verdict.duplicates),
                "orphans": len(self.verdict.orphans), "changes": self.changes.changes,
                "reconciles": self.reconciles, "api_calls_faultable": int(self.faults["calls"]),
                "watches_faultable": int(self.faults["watches"]), "faults_by_kind": self.faults["injected"],
                "timeouts_applied": int(self.faults["timeoutsApplied"]),
                "services_at_end": self.verdict.services, "children_at_end": self.verdict.children,
                "seconds_to_converge": round(self.seconds_to_converge, 1), "seconds": round(self.seconds, 1)}


def run_fault_campaign(workdir: Path, reconciles: int, rate: float, seed: int, pool: int,
                       watch_drop: float = 0.3, namespaces: tuple[str, ...] = ("rel-a", "rel-b"),
                       pace_s: float = 0.03, converge_timeout: float = 300.0) -> FaultRun:
    """The emulator failing `rate` of the operator's calls; the real operator; changes to InferenceServices until
    the operator has run `reconciles` reconciles (at least that many changes); then the verdict."""
    from shoal.fleet.apiserver.process import start_apiserver

    started = time.monotonic()
    with start_apiserver(workdir, manifests=(CRD,), faults=faults_config(rate, seed, watch_drop)) as emulator:
        api = Api(emulator.url)
        api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", SERVICEMONITOR_CRD)
        create_namespaces(api, namespaces)
        operator = OperatorProcess(workdir, emulator.url, token="operator")
        try:
            counts = run_workload(api, reconciles, seed, namespaces, pool, pace_s,
                                  until=lambda: operator.reconciles() >= reconciles)
            if operator.reconciles() < reconciles:
                raise AssertionError(f"{counts.changes} changes made only {operator.reconciles()} reconciles")
            final, seconds = wait_converged(api, monitoring=True, timeout=converge_timeout)
            reconciles = operator.reconciles()
            if operator.process.poll() is not None:
                raise AssertionError(f"the operator exited:\n{operator.tail()}")
            faults = fault_report(api)
        finally:
            operator.stop()
    return FaultRun(counts, reconciles, faults, final, seconds, time.monotonic() - started)
