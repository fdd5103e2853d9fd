"""Run the emulator in its own process (its CPU time then stays apart from the client's)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoal.fleet.apiserver.faults import FaultConfig


@dataclass
class ApiProcess:
    process: subprocess.Popen
    kubeconfig: Path
    url: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "ApiProcess":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_apiserver(workdir: Path, manifests: tuple[Path, ...] = (), timeout: float = 30.0,
                    interpreter_args: tuple[str, ...] = (), faults: "FaultConfig | None" = None) -> ApiProcess:
    """Start `shoal apiserver` on a free port with the objects of these YAML files (CRDs first) created;
    returns once its kubeconfig is written (it listens by then). `faults`: its --faults (faults.py)."""
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.unlink(missing_ok=True)
    command = [sys.executable, *interpreter_args, "-m", "shoal", "apiserver", "--kubeconfig", str(kubeconfig)]
    for crd in manifests:
        command += ["--manifest", str(crd)]
    if faults is not None:
        command += ["--faults", faults.to_text()]
    log = open(workdir / "apiserver.log", "w")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ))
    deadline = time.monotonic() + timeout
    while not kubeconfig.exists() or "server:" not in kubeconfig.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the API emulator did not start; see {workdir / 'apiserver.log'}")
        time.sleep(0.05)
    url = next(line.split()[-1] for line in kubeconfig.read_text().splitlines() if "server:" in line)
    return ApiProcess(process, kubeconfig, url)
