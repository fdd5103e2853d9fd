"""Crash points: count one client's writes and SIGKILL its process right after its k-th write.

A client is told apart by its bearer token (each operator incarnation gets its own kubeconfig). The k-th write is
applied, then the process is killed before the answer leaves, and every later call carrying that token (already
sent, still in a socket buffer) is dropped unserved: the store holds exactly writes 1..k of that incarnation.
Events are not counted: they are auxiliary records, not state a reconcile depends on.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def bearer_token(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def counts_as_write(method: str, path: str, status: int) -> bool:
    """A state change the API server accepted (no Events)."""
    return method in MUTATING and status < 400 and "/events" not in path


def wait_until_dead(pid: int, timeout_s: float = 2.0) -> bool:
    """Block (deliberately: no other call may be served meanwhile) until `pid` is gone or a zombie."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rpartition(")")[2].split()[0] in ("Z", "X"):
                    return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.001)
    return False


@dataclass
class Tripwire:
    token: str = ""  # the watched client's bearer token; "" = armed for nobody
    pid: int | None = None  # the process to SIGKILL
    after: int | None = None  # kill right after this many writes (None: only count)
    writes: list[str] = field(default_factory=list)  # "METHOD path" of each counted write, in order
    killed: bool = False
    dead_tokens: set[str] = field(default_factory=set)
    dropped: int = 0  # calls of a killed client that arrived after its death and were not served

    def arm(self, token: str, pid: int | None = None, after: int | None = None) -> None:
        if after is not None and (after < 1 or pid is None):
            raise ValueError(f"tripwire: after={after!r} needs a pid and must be >= 1")
        self.token, self.pid, self.after = token, pid, after
        self.writes, self.killed = [], False

    def is_dead(self, authorization: str) -> bool:
        return bool(self.dead_tokens) and bearer_token(authorization) in self.dead_tokens

    def observe(self, authorization: str, method: str, path: str, status: int) -> bool:
        """Count a served call; returns True when it was the fatal write (the caller then drops its answer)."""
        if not self.token or self.killed or bearer_token(authorization) != self.token:
            return False
        if not counts_as_write(method, path, status):
            return False
        self.writes.append(f"{method} {path}")
        if self.after is None or len(self.writes) < self.after:
            return False
        self.killed = True
        self.dead_tokens.add(self.token)
        os.kill(self.pid, signal.SIGKILL)
        wait_until_dead(self.pid)
        return True

    def report(self) -> dict[str, Any]:
        return {"token": self.token, "pid": self.pid, "after": self.after, "writes": list(self.writes),
                "killed": self.killed, "dropped": self.dropped}
