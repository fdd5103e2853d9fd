"""The operator's own Prometheus metrics (one registry per operator instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Fine buckets below 100 ms: the reconcile p99 target is 100 ms, and benchmarks interpolate quantiles here.
RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25,
                     0.5, 1.0, 2.5, 5.0, 10.0)


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconcile_duration = Histogram(
            "shoal_operator_reconcile_duration_seconds", "Time one InferenceService reconcile took.",
            buckets=RECONCILE_BUCKETS, registry=self.registry)
        self.reconcile_errors = Counter(
            "shoal_operator_reconcile_errors_total", "Reconciles that failed (and were retried), by error type.",
            ["reason"], registry=self.registry)
        self.desired_replicas = Gauge(
            "shoal_operator_desired_replicas", "Engine replicas the operator asks of each service's Deployment.",
            ["namespace", "service"], registry=self.registry)
        self.ready_replicas = Gauge(
            "shoal_operator_ready_replicas", "Ready engine replicas of each service, as its Deployment reports.",
            ["namespace", "service"], registry=self.registry)

    def forget(self, namespace: str, service: str) -> None:
        """Drop the per-service series of a deleted service."""
        for gauge in (self.desired_replicas, self.ready_replicas):
            try:
                gauge.remove(namespace, service)
            except KeyError:
                pass  # never reconciled: no series to drop
