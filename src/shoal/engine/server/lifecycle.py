"""Server lifecycle: starting -> ready -> draining -> stopped, and the in-flight request count drain waits on.

`/ready` is true only in `ready`; new generation requests are admitted only in `ready`. Draining keeps serving
what was admitted until it finishes or the drain timeout passes.
"""

from __future__ import annotations

import asyncio
import enum

from shoal.engine.server.errors import unavailable


class State(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"


class Lifecycle:
    def __init__(self) -> None:
        self.state = State.STARTING
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    def mark_ready(self) -> None:
        if self.state is not State.STARTING:
            raise RuntimeError(f"mark_ready from {self.state.value}")
        self.state = State.READY

    def begin_drain(self) -> bool:
        """Stop admitting; returns False when a drain was already under way."""
        if self.state in (State.DRAINING, State.STOPPED):
            return False
        self.state = State.DRAINING
        return True

    def admit(self) -> None:
        """Count one request in, or raise 503 when not ready. Pair with `release`."""
        if self.state is not State.READY:
            reason = "is draining" if self.state is State.DRAINING else f"is {self.state.value}"
            raise unavailable(f"The server {reason} and takes no new requests; retry on another replica.")
        self.in_flight += 1
        self._idle.clear()

    def release(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """True when every admitted request finished within the timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except TimeoutError:
            return False

    def mark_stopped(self) -> None:
        self.state = State.STOPPED
