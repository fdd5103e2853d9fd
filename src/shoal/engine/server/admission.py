"""The bounded waiting queue: admit a request, or refuse it with 429 and a Retry-After estimate.

Counted on the server side (requests handed to the engine and not finished), so the decision never waits on
engine statistics: what exceeds the runtime admission cap is waiting, and at most `max_waiting` may wait.
"""

from __future__ import annotations

import collections
import math
import time

from shoal.engine.server.errors import queue_full

RATE_WINDOW_S = 10.0
MAX_RETRY_AFTER_S = 30


def retry_after_seconds(excess: int, finish_rate_per_s: float) -> int:
    """Seconds until about `excess` requests have finished at the recent rate; 1..MAX_RETRY_AFTER_S."""
    if finish_rate_per_s <= 0:
        return MAX_RETRY_AFTER_S // 6
    return max(1, min(MAX_RETRY_AFTER_S, math.ceil(excess / finish_rate_per_s)))


class Admission:
    def __init__(self, max_waiting: int, clock=time.monotonic):
        self.max_waiting = max_waiting
        self.in_engine = 0
        self._clock = clock
        self._finished: collections.deque[float] = collections.deque()

    def waiting_after(self, new: int, admission_cap: int) -> int:
        return max(0, self.in_engine + new - admission_cap)

    def admit(self, new: int, admission_cap: int) -> None:
        """Count `new` requests in, or raise 429 when they would overfill the waiting queue."""
        waiting = self.waiting_after(new, admission_cap)
        if waiting > self.max_waiting:
            excess = waiting - self.max_waiting
            raise queue_full(waiting - new, retry_after_seconds(excess, self.finish_rate()))
        self.in_engine += new

    def finished(self) -> None:
        self.in_engine -= 1
        now = self._clock()
        self._finished.append(now)
        self._trim(now)

    def finish_rate(self) -> float:
        now = self._clock()
        self._trim(now)
        return len(self._finished) / RATE_WINDOW_S

    def _trim(self, now: float) -> None:
        while self._finished and self._finished[0] < now - RATE_WINDOW_S:
            self._finished.popleft()
