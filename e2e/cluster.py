"""Where the e2e tests run: the local fleet (default) or a real cluster (when KUBECONFIG is set).

Tests talk to either through the same few verbs, `kubectl` first, as a user would. The local fleet runs as its own
process (`shoal fleet up`), and the operator as another (`shoal operator`), so a test can kill and restart it; on a
real cluster the operator is the chart's Deployment and killing it means deleting its pod.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shoal.fleet.fleet import operator_argv

REPO = Path(__file__).resolve().parents[1]
SELECTOR = "shoal.dev/service"


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last value: {last!r})")


@dataclass
class Cluster:
    kubeconfig: Path
    local: bool
    workdir: Path | None = None
    prometheus_url: str | None = None
    operator_args: tuple[str, ...] = ()
    operator_env: dict[str, str] = field(default_factory=dict)
    _fleet: subprocess.Popen | None = None
    _operator: subprocess.Popen | None = None
    _forwards: list[subprocess.Popen] = field(default_factory=list)

    # -- kubectl ----------------------------------------------------------------------------------------------------
    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60) -> str:
        cmd = ["kubectl", "--kubeconfig", str(self.kubeconfig), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done.stdout

    def get(self, kind: str, name: str | None = None, namespace: str = "default", selector: str | None = None) -> dict:
        args = ["get", kind, "-n", namespace, "-o", "json"]
        if name:
            args.insert(2, name)
        if selector:
            args += ["-l", selector]
        out = self.kubectl(*args, check=False)
        return json.loads(out) if out.strip() else {}

    def items(self, kind: str, namespace: str = "default", selector: str | None = None) -> list[dict]:
        return self.get(kind, namespace=namespace, selector=selector).get("items") or []

    def ready_pods(self, service: str, namespace: str = "default") -> list[dict]:
        return [
            p for p in self.items("pods", namespace, f"{SELECTOR}={service}")
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])
        ]

    # -- endpoints --------------------------------------------------------------------------------------------------
    def service_url(self, name: str, namespace: str = "default") -> str:
        """Base URL of a Service: its local address on the fleet, a `kubectl port-forward` on a cluster."""
        if self.local:
            def lb():
                ingress = ((self.get("service", name, namespace).get("status") or {}).get("loadBalancer") or {}).get("ingress")
                return ingress[0] if ingress else None
            ingress = wait_until(lb, 120, f"Service {namespace}/{name} to get its local address")
            return f"http://{ingress['ip']}:{ingress['ports'][0]['port']}"
        return self._port_forward(f"service/{name}", namespace, 8000)

    def pod_url(self, pod: dict) -> str:
        if self.local:
            port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
            return f"http://{pod['status']['podIP']}:{port}"
        return self._port_forward(f"pod/{pod['metadata']['name']}", pod["metadata"]["namespace"], 8000)

    def _port_forward(self, target: str, namespace: str, port: int) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            local = s.getsockname()[1]
        proc = subprocess.Popen(["kubectl", "--kubeconfig", str(self.kubeconfig), "port-forward", "-n", namespace,
                                 target, f"{local}:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._forwards.append(proc)
        wait_until(lambda: _port_open("127.0.0.1", local), 30, f"port-forward to {target}")
        return f"http://127.0.0.1:{local}"

    # -- the operator -----------------------------------------------------------------------------------------------
    def start_operator(self) -> None:
        if not self.local:
            return  # the chart's Deployment restarts it
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.operator_env}
        log = open(self.workdir / "operator-e2e.log", "ab")
        self._operator = subprocess.Popen(operator_argv(self.prometheus_url, self.operator_args), env=env,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def kill_operator(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies."""
        if self.local:
            if self._operator and self._operator.poll() is None:
                self._operator.kill()
                self._operator.wait()
            self._operator = None
        else:
            self.kubectl("delete", "pod", "-A", "-l", "app.kubernetes.io/name=shoal-operator", "--grace-period=0", "--force")

    def operator_log(self) -> str:
        return (self.workdir / "operator-e2e.log").read_text(errors="replace")[-4000:] if self.local else ""

    # -- processes (local only: on a cluster, pods are the processes) -----------------------------------------------------
    def engine_processes(self, pod_ips: list[str]) -> list[int]:
        """PIDs of `shoal serve` processes listening on any of these pod IPs."""
        import psutil

        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmd = proc.info.get("cmdline") or []
            if "serve" in cmd and "--host" in cmd and cmd[cmd.index("--host") + 1] in pod_ips:
                found.append(proc.info["pid"])
        return found

    # -- lifecycle ----------------------------------------------------------------------------------------------------
    @classmethod
    def start_local(cls, workdir: Path, operator_args: tuple[str, ...], operator_env: dict[str, str]) -> "Cluster":
        log = open(workdir / "fleet-up.log", "ab")
        fleet = subprocess.Popen([sys.executable, "-m", "shoal", "fleet", "up", "--workdir", str(workdir / "fleet"),
                                  "--no-operator"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        info_path = workdir / "fleet" / "fleet.json"

        def ready():
            if fleet.poll() is not None:
                raise AssertionError(f"shoal fleet up exited: {(workdir / 'fleet-up.log').read_text()[-3000:]}")
            return info_path.exists()

        wait_until(ready, 120, "the local fleet to start")
        info = json.loads(info_path.read_text())
        cluster = cls(kubeconfig=Path(info["kubeconfig"]), local=True, workdir=workdir,
                      prometheus_url=info["prometheus_url"], operator_args=operator_args,
                      operator_env=operator_env, _fleet=fleet)
        cluster.start_operator()
        return cluster

    def stop(self) -> None:
        for proc in self._forwards:
            proc.terminate()
        if self._operator and self._operator.poll() is None:
            self._operator.terminate()
            self._operator.wait(20)
        if self._fleet and self._fleet.poll() is None:
            self._fleet.send_signal(signal.SIGINT)  # as Ctrl-C: drain pods, stop Prometheus and the emulator
            try:
                self._fleet.wait(60)
            except subprocess.TimeoutExpired:
                self._fleet.kill()
                self._fleet.wait()


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def parse_metric(text: str, name: str) -> list[float]:
    """Values of one metric in Prometheus text format (all label sets)."""
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})?\s+(\S+)$", re.M)
    return [float(v) for v in pattern.findall(text)]
