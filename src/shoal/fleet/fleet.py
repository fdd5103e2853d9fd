"""The local fleet: API emulator, kubelet, service proxies, Prometheus and the operator, started and stopped together.

    async with LocalFleet(FleetSettings()) as fleet:
        fleet.kubeconfig        # for kubectl / kopf / the tests
        await fleet.service_url("default", "local-chat")

Every part is a real process or server talking over HTTP, as in a cluster: the emulator (`shoal apiserver`), the
operator (`shoal operator`, unchanged, pointed at the emulator's kubeconfig and at Prometheus), Prometheus (the
Debian package), and one `shoal serve` per pod. Stopping drains the pods, then stops the rest in reverse order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from shoal.fleet.cores import CoreSlots, available_cores, make_slots
from shoal.fleet.kube import KubeClient, KubeError, core_path, load_kubeconfig
from shoal.fleet.kubelet import MANAGED_SELECTOR, Kubelet
from shoal.fleet.prometheus import PrometheusServer, PrometheusSettings
from shoal.fleet.replica import child_setup, free_port
from shoal.fleet.service_proxy import ServiceProxy

log = logging.getLogger("shoal.fleet")
REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class FleetSettings:
    workdir: Path | None = None  # None: a fresh temporary folder, removed at stop
    cores_per_replica: int = 1
    scrape_interval_s: float = 1.0
    operator: bool = True
    operator_args: tuple[str, ...] = ()
    operator_env: dict[str, str] = field(default_factory=dict)  # e.g. SHOAL_AUTOSCALER_PERIOD_SECONDS
    model_dir: Path | None = None  # None: shoal.engine.model_prepare.prepare("smollm2")
    crds: tuple[Path, ...] = (REPO_ROOT / "crds" / "inferenceservice.yaml",)
    keep_workdir: bool = False
    serve_prefix: tuple[str, ...] = ()  # the engine command for pods; default `python -m shoal serve`

    def __post_init__(self) -> None:
        if self.cores_per_replica < 1:
            raise ValueError(f"cores_per_replica must be >= 1, got {self.cores_per_replica}")
        for crd in self.crds:
            if not Path(crd).exists():
                raise FileNotFoundError(f"CRD file {crd} not found (run from a Shoal checkout, or pass crds=...)")


class LocalFleet:
    def __init__(self, settings: FleetSettings | None = None) -> None:
        self.settings = settings or FleetSettings()
        self.slots: CoreSlots = make_slots(available_cores(), self.settings.cores_per_replica)
        self.workdir: Path = Path("/")
        self.kubeconfig: Path = Path("/")
        self.prometheus: PrometheusServer | None = None
        self.kubelet: Kubelet | None = None
        self.proxies: dict[tuple[str, str], ServiceProxy] = {}
        self.operator_log: Path = Path("/")
        self._apiserver: subprocess.Popen | None = None
        self._operator: subprocess.Popen | None = None
        self._kube: KubeClient | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._own_workdir = False

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    async def __aenter__(self) -> "LocalFleet":
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        s = self.settings
        if s.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="shoal-fleet-"))
            self._own_workdir = not s.keep_workdir
        else:
            self.workdir = s.workdir
            self.workdir.mkdir(parents=True, exist_ok=True)
        model_dir = s.model_dir or _prepare_model()
        self.kubeconfig = self.workdir / "kubeconfig"
        await self._start_apiserver()
        self._kube = await KubeClient(load_kubeconfig(self.kubeconfig)).__aenter__()
        self.prometheus = PrometheusServer(self.workdir / "prometheus", free_port(),
                                           PrometheusSettings(scrape_interval_s=s.scrape_interval_s))
        await self.prometheus.start()
        self.kubelet = Kubelet(self._kube, self.workdir, model_dir, self.slots, on_targets=self.prometheus.set_targets,
                               serve_prefix=s.serve_prefix)
        self._tasks.append(asyncio.create_task(self.kubelet.run(self._stop), name="kubelet"))
        self._tasks.append(asyncio.create_task(self._sync_services(), name="services"))
        if s.operator:
            self.start_operator()
        # What another process (the e2e tests, a shell) needs to find this fleet.
        (self.workdir / "fleet.json").write_text(json.dumps({
            "kubeconfig": str(self.kubeconfig), "prometheus_url": self.prometheus.url, "workdir": str(self.workdir),
            "pid": os.getpid(), "replica_slots": [list(x) for x in self.slots.slots],
        }, indent=1))

    async def stop(self) -> None:
        self._stop.set()
        self.stop_operator()
        if self.kubelet is not None:
            for task in self._tasks:
                if task.get_name() == "kubelet":
                    await asyncio.gather(task, return_exceptions=True)
            await self.kubelet.shutdown(grace_s=20)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for proxy in self.proxies.values():
            await proxy.stop()
        self.proxies.clear()
        if self.prometheus is not None:
            self.prometheus.stop()
        if self._kube is not None:
            await self._kube.__aexit__(None, None, None)
            self._kube = None
        _stop_process(self._apiserver)
        self._apiserver = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def _start_apiserver(self) -> None:
        argv = [sys.executable, "-m", "shoal", "apiserver", "--kubeconfig", str(self.kubeconfig)]
        for crd in self.settings.crds:
            argv += ["--crd", str(crd)]
        logfile = open(self.workdir / "apiserver.log", "ab")
        self._apiserver = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=logfile, start_new_session=True,
                                           preexec_fn=child_setup)
        logfile.close()
        deadline = time.monotonic() + 60
        while not self.kubeconfig.exists():
            if self._apiserver.poll() is not None:
                raise RuntimeError(f"shoal apiserver exited: {(self.workdir / 'apiserver.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("shoal apiserver wrote no kubeconfig within 60 s")
            await asyncio.sleep(0.1)

    # -- the operator (a separate process, so tests can kill and restart it) -----------------------------------------
    def start_operator(self) -> None:
        assert self.prometheus is not None
        if self._operator is not None and self._operator.poll() is None:
            return
        argv = operator_argv(self.prometheus.url, self.settings.operator_args)
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.settings.operator_env}
        self.operator_log = self.workdir / "operator.log"
        logfile = open(self.operator_log, "ab")
        self._operator = subprocess.Popen(argv, env=env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True,
                                          preexec_fn=child_setup)
        logfile.close()

    def stop_operator(self, kill: bool = False) -> None:
        _stop_process(self._operator, sig=signal.SIGKILL if kill else signal.SIGTERM)
        self._operator = None

    @property
    def operator_pid(self) -> int | None:
        return self._operator.pid if self._operator and self._operator.poll() is None else None

    # -- services: one local proxy per Service the operator made -------------------------------------------------------
    async def _sync_services(self) -> None:
        assert self._kube is not None and self.kubelet is not None
        while not self._stop.is_set():
            try:
                services = await self._kube.list(core_path(None, "services"), MANAGED_SELECTOR)
                seen = set()
                for svc in services:
                    key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
                    seen.add(key)
                    if key not in self.proxies:
                        await self._add_proxy(key, svc)
                for key in set(self.proxies) - seen:
                    await self.proxies.pop(key).stop()
            except (KubeError, aiohttp.ClientError, asyncio.TimeoutError) as e:
                log.warning("service sync failed (retrying): %s", e)
            try:
                await asyncio.wait_for(self._stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass

    async def _add_proxy(self, key: tuple[str, str], svc: dict) -> None:
        selector = (svc.get("spec") or {}).get("selector") or {}
        kubelet = self.kubelet
        assert kubelet is not None and self._kube is not None
        proxy = ServiceProxy(f"{key[0]}/{key[1]}", lambda: kubelet.ready_backends(key[0], selector))
        await proxy.start()
        self.proxies[key] = proxy
        # As a cloud load balancer would: kubectl shows the local address as the Service's EXTERNAL-IP.
        ingress = {"loadBalancer": {"ingress": [{"ip": proxy.host, "ports": [{"port": proxy.port, "protocol": "TCP"}]}]}}
        try:
            await self._kube.merge_patch(core_path(key[0], "services", key[1], "status"), {"status": ingress})
        except KubeError as e:
            log.info("could not record the local address on Service %s: %s", key, e)

    async def service_url(self, namespace: str, name: str, timeout_s: float = 120.0) -> str:
        """The local base URL (no /v1) of a Service, once the operator has created it."""
        deadline = time.monotonic() + timeout_s
        while (namespace, name) not in self.proxies:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Service {namespace}/{name} did not appear within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)
        return self.proxies[(namespace, name)].url

    @property
    def kube(self) -> KubeClient:
        assert self._kube is not None, "the fleet is not started"
        return self._kube


def operator_argv(prometheus_url: str, extra: tuple[str, ...] = ()) -> list[str]:
    """`shoal operator` as the fleet runs it: one replica (no peering), its side ports free ones, not 8080/9090."""
    return [sys.executable, "-m", "shoal", "operator", "--all-namespaces", "--standalone",
            "--prometheus-url", prometheus_url, "--liveness-port", str(free_port()), "--metrics-port", str(free_port()),
            *extra]


def _prepare_model() -> Path:
    from shoal.engine.model_prepare import prepare

    return Path(prepare("smollm2"))


def _stop_process(process: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
