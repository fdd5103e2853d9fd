"""Running the operator: kopf embedded, with its liveness endpoint, peering, and our metrics endpoint.

Importing this module registers our kopf handlers in kopf's default registry; each run copies them into a fresh
registry and adds the autoscaler's timer at the run's control period.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import kopf

from shoal.operator import handlers  # noqa: F401  (registers the handlers)
from shoal.operator import autoscaler  # also registers its cleanup handler
from shoal.operator.config import OperatorConfig
from shoal.operator.kopf_settings import operator_settings
from shoal.operator.metrics import OperatorMetrics


def start_metrics_server(metrics: OperatorMetrics, port: int) -> None:
    from prometheus_client import start_http_server

    start_http_server(port, registry=metrics.registry)


def operator_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """The module-level handlers plus the autoscaler's timer at this run's period. A fresh registry per run, so
    operators started in one process (tests, OperatorThread, side by side for peering) never stack timers."""
    registry = kopf.OperatorRegistry()
    default = kopf.get_default_registry()
    for part in ("_activities", "_indexing", "_watching", "_spawning", "_changing", "_webhooks"):
        for handler in getattr(default, part).get_all_handlers():
            getattr(registry, part).append(handler)
    autoscaler.register_timer(registry, config.control_period_s)
    return registry


async def run_operator(config: OperatorConfig, *, stop_flag: Any = None, ready_flag: Any = None,
                       metrics: OperatorMetrics | None = None) -> None:
    """Run until `stop_flag` is set (or forever). Peering (leader election) unless standalone: with more than
    one operator replica, only the highest-priority one handles resources; without the peering CRDs
    installed kopf falls back to standalone with a warning."""
    metrics = metrics or OperatorMetrics()
    if config.metrics_port is not None:
        start_metrics_server(metrics, config.metrics_port)
    liveness = f"http://0.0.0.0:{config.liveness_port}/healthz" if config.liveness_port is not None else None
    settings = operator_settings(config)
    await kopf.operator(
        registry=operator_registry(config),
        settings=settings,
        clusterwide=config.all_namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=liveness,
        memo=kopf.Memo(config=config, metrics=metrics),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


class OperatorThread:
    """The operator in a background thread with its own event loop (tests, benchmarks, the local fleet)."""

    def __init__(self, config: OperatorConfig, metrics: OperatorMetrics | None = None):
        self.config = config
        self.metrics = metrics or OperatorMetrics()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="shoal-operator", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(run_operator(self.config, stop_flag=self._stop, ready_flag=self._ready, metrics=self.metrics))
        except BaseException as exc:  # surfaced by stop()/start()
            self._error = exc
            self._ready.set()

    def start(self, timeout: float = 30.0) -> "OperatorThread":
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the operator did not become ready in time")
        if self._error is not None:
            raise RuntimeError("the operator failed to start") from self._error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._error is not None:
            raise RuntimeError("the operator failed") from self._error

    def __enter__(self) -> "OperatorThread":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # per-object handler chatter; our own log lines say what changed
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
