"""The real Prometheus server (Debian package `prometheus`), configured and run by the local fleet.

Targets come from a file_sd JSON file that the kubelet rewrites as pods come and go; each target carries the labels
DESIGN's PromQL selects on (`namespace`, `service`, `pod`), as a ServiceMonitor's relabeling would add them in a
cluster. The server keeps its data in its own temporary folder and is stopped with the fleet.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

SERVICE_LABEL = "shoal.dev/service"
TARGETS_FILE = "targets.json"


@dataclass(frozen=True)
class ScrapeTarget:
    address: str  # host:port
    namespace: str
    service: str
    pod: str


@dataclass(frozen=True)
class PrometheusSettings:
    scrape_interval_s: float = 1.0
    retention: str = "2h"

    def __post_init__(self) -> None:
        if not 0.1 <= self.scrape_interval_s <= 60:
            raise ValueError(f"scrape_interval_s must be within [0.1, 60] seconds, got {self.scrape_interval_s}")


def _duration(seconds: float) -> str:
    return f"{int(round(seconds * 1000))}ms"


def build_config(settings: PrometheusSettings, targets_path: Path) -> dict:
    interval = _duration(settings.scrape_interval_s)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [
            {
                "job_name": "shoal-engines",
                "metrics_path": "/metrics",
                "file_sd_configs": [{"files": [str(targets_path)], "refresh_interval": "1s"}],
            }
        ],
    }


def build_targets(targets: list[ScrapeTarget]) -> list[dict]:
    """file_sd content: one group per pod, so each target carries its own pod label."""
    return [
        {"targets": [t.address], "labels": {"namespace": t.namespace, "service": t.service, "pod": t.pod}}
        for t in sorted(targets, key=lambda t: (t.namespace, t.service, t.pod))
    ]


def find_binary() -> str:
    path = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)
    if not path:
        raise FileNotFoundError(
            "the Prometheus server is not installed: run `make setup` (it installs the Debian package prometheus) "
            "or `apt-get install prometheus`"
        )
    return path


class PrometheusServer:
    """One Prometheus process with a generated config; `set_targets` rewrites its file_sd file atomically."""

    def __init__(self, workdir: Path, port: int, settings: PrometheusSettings | None = None) -> None:
        self.settings = settings or PrometheusSettings()
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.targets_path = workdir / TARGETS_FILE
        self._process: subprocess.Popen | None = None
        self._last_targets: list[dict] | None = None

    async def start(self, timeout_s: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.set_targets([])
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(build_config(self.settings, self.targets_path), sort_keys=False))
        log = open(self.workdir / "prometheus.log", "ab")
        self._process = subprocess.Popen(
            [
                find_binary(),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--storage.tsdb.retention.time={self.settings.retention}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal goes to the fleet, which stops this cleanly
            preexec_fn=_die_with_parent,
        )
        log.close()
        await _wait_ready(f"{self.url}/-/ready", self._process, timeout_s, self.workdir / "prometheus.log")

    def set_targets(self, targets: list[ScrapeTarget]) -> None:
        content = build_targets(targets)
        if content == self._last_targets:
            return
        tmp = self.targets_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(content, indent=1))
        os.replace(tmp, self.targets_path)  # atomic, so Prometheus never reads half a file
        self._last_targets = content

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


def _die_with_parent() -> None:
    from shoal.fleet.replica import child_setup

    child_setup()


async def _wait_ready(url: str, process: subprocess.Popen, timeout_s: float, log_path: Path) -> None:
    import aiohttp

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while loop.time() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"prometheus exited with code {process.returncode}:\n{tail}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"prometheus not ready at {url} after {timeout_s:.0f} s (log: {log_path})")


async def query(session, base_url: str, promql: str) -> list[dict]:
    """An instant query; [] on no data (the demo's view shows '-' rather than a made-up zero)."""
    async with session.get(f"{base_url}/api/v1/query", params={"query": promql}) as response:
        if response.status != 200:
            return []
        body = await response.json()
    return body.get("data", {}).get("result", []) if body.get("status") == "success" else []
