"""One local replica: a `shoal serve` process pinned to its cores, probed for readiness, drained on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from shoal.fleet.local_pod import LocalCommand, Placement


@dataclass
class ReplicaState:
    """What the kubelet reports for the pod: phase, readiness, restarts."""

    phase: str = "Pending"  # Pending -> Running -> Succeeded/Failed (after a drain or a crash with no restart)
    ready: bool = False
    restarts: int = 0
    started_at: float | None = None
    draining: bool = False
    exit_codes: list[int] = field(default_factory=list)


class LocalReplica:
    def __init__(self, pod_key: tuple[str, str], command: LocalCommand, placement: Placement, slot: int) -> None:
        self.pod_key = pod_key  # (namespace, name)
        self.command = command
        self.placement = placement
        self.slot = slot
        self.state = ReplicaState()
        self._process: subprocess.Popen | None = None
        self._drain_deadline: float | None = None
        self._next_restart_at = 0.0
        self._failures_in_a_row = 0

    @property
    def address(self) -> str:
        return f"{self.placement.host}:{self.placement.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> Path:
        return self.placement.pod_dir / "serve.log"

    def write_files(self) -> None:
        for d in self.command.dirs:
            d.mkdir(parents=True, exist_ok=True)
        for path, content in self.command.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            if "admin" in path.parts or "token" in path.name:
                path.chmod(0o600)

    def start(self) -> None:
        self.placement.pod_dir.mkdir(parents=True, exist_ok=True)
        self.write_files()
        cores = set(self.placement.cores)
        log = open(self.log_path, "ab")
        log.write(f"\n--- start {time.strftime('%H:%M:%S')} cores={sorted(cores)}: {' '.join(self.command.argv)}\n".encode())
        log.flush()
        self._process = subprocess.Popen(
            self.command.argv,
            env={**os.environ, **self.command.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.placement.pod_dir,
            # Its own session: Ctrl-C reaches the fleet only, which then drains replicas in order.
            start_new_session=True,
            preexec_fn=lambda: child_setup(cores),
        )
        log.close()
        self.state.phase = "Running"
        self.state.ready = False
        self.state.started_at = time.time()

    def drain(self, grace_s: float) -> None:
        """SIGTERM: the server stops being ready, finishes in-flight requests, exits; SIGKILL after `grace_s`."""
        if self.state.draining:
            return
        self.state.draining = True
        self.state.ready = False
        self._drain_deadline = time.monotonic() + grace_s
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def poll(self) -> str:
        """Advance the process state: 'running', 'exited' (drained and gone), 'crashed' (just now) or 'backoff'."""
        p = self._process
        if p is None:
            return "exited" if self.state.draining else "backoff"
        code = p.poll()
        if code is None:
            if self.state.draining and self._drain_deadline and time.monotonic() > self._drain_deadline:
                p.kill()
            return "running"
        self._process = None
        self.state.exit_codes.append(code)
        self.state.ready = False
        if self.state.draining:
            self.state.phase = "Succeeded" if code == 0 else "Failed"
            return "exited"
        return "crashed"

    def schedule_restart(self) -> None:
        # Crash-loop back-off as a kubelet does, shortened for a laptop: 1, 2, 4 ... 30 s.
        self._failures_in_a_row += 1
        self._next_restart_at = time.monotonic() + min(30.0, 2.0 ** (self._failures_in_a_row - 1))
        self.state.phase = "Pending"

    def restart_due(self) -> bool:
        return self._process is None and not self.state.draining and time.monotonic() >= self._next_restart_at

    def restart(self) -> None:
        self.state.restarts += 1
        self.start()

    async def probe(self, session: aiohttp.ClientSession) -> bool:
        """GET /ready, like a readinessProbe; a replica that was ready resets its crash back-off."""
        if self._process is None or self.state.draining:
            return False
        try:
            async with session.get(f"http://{self.address}/ready", timeout=aiohttp.ClientTimeout(total=2)) as r:
                ready = r.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            ready = False
        if ready:
            self._failures_in_a_row = 0
        self.state.ready = ready
        return ready

    def kill(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def child_setup(cores: set[int] | None = None) -> None:
    """In the child before exec: pin it to its cores, and have it die with the fleet if the fleet is killed."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: Ctrl-C still stops everything; only a SIGKILLed fleet would leave children


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """`preferred` when it can be bound on `host`, else one the kernel picks (bind port 0)."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError(f"no free port on {host}")
