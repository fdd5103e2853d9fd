"""Timings of the engine child's loop, per iteration, for finding where serving throughput goes (benchmarks).

With SHOAL_ENGINE_TRACE=FILE in its environment the engine child records, for every iteration of its loop that
stepped, the wall clock at its start (to line up with a client's timings), the seconds spent idle (waiting for work),
taking commands, stepping the engine (and of that, waiting for the device's sampled tokens: a GPU-bound loop waits,
a host-bound one does not) and sending the step's message, and the batch it ran; it writes them as JSON to FILE
when it stops. Unset, nothing is recorded.
"""

from __future__ import annotations

import json
import os

ENV = "SHOAL_ENGINE_TRACE"
COLUMNS = ("wall_start", "idle_s", "commands_s", "step_s", "device_wait_s", "send_s", "num_running", "num_tokens")


class StepTrace:
    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: list[tuple] = []

    @classmethod
    def from_env(cls) -> StepTrace | None:
        path = os.environ.get(ENV)
        return cls(path) if path else None

    def record(self, wall_start: float, t: tuple[float, float, float, float, float], device_wait_s: float,
               num_running: int, num_tokens: int) -> None:
        """t: perf_counter at the iteration's start, once work came, after commands, after the step, after sending."""
        self.rows.append((round(wall_start, 6), t[1] - t[0], t[2] - t[1], t[3] - t[2], device_wait_s, t[4] - t[3],
                          num_running, num_tokens))

    def save(self) -> None:
        with open(self.path, "w") as f:
            json.dump({"columns": COLUMNS, "rows": self.rows}, f)


def load(path: str) -> list[dict]:
    data = json.loads(open(path).read())
    return [dict(zip(data["columns"], row)) for row in data["rows"]]
