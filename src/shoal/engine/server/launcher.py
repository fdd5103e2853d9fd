"""Start `shoal serve` as a child process and find its address (for tests, benchmarks and local fleets)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LISTENING = re.compile(r"shoal serve: listening on (http://\S+)")


class ServerProcess:
    """`with ServerProcess(["--model", dir, "--port", "0"]) as server: server.url ...`; logs go to `log_path`."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, startup_timeout_s: float = 300.0,
                 log_path: Path | None = None):
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="shoal-serve-", suffix=".log")[1])
        self.url: str | None = None
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "shoal", "serve", *self.args], stdout=log,
                                     stderr=subprocess.STDOUT, env=self.env)
        log.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            match = LISTENING.search(self.log())
            if match:
                self.url = match.group(1).replace("0.0.0.0", "127.0.0.1")
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"shoal serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"shoal serve did not listen within {self.startup_timeout_s} s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        """Send SIGTERM (starts the drain)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()
