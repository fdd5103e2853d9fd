"""Operator crashes: SIGKILL the real operator right after each write of one full reconcile of an autoscaled
service (children, status, the autoscaler's status, scale and ConfigMap writes), restart it: it converges to exactly
the desired children and the autoscaler resumes from its state in status. crash_harness.py says how."""

from __future__ import annotations

from crash_harness import crash_at, crash_bench, enumerate_writes

MAX_POINTS = 30  # Prometheus targets prepared for this many crash points


def test_every_crash_point_of_one_reconcile_converges_and_keeps_the_autoscaler_state(tmp_path):
    with crash_bench(tmp_path, MAX_POINTS) as bench:
        writes = enumerate_writes(bench)
        assert len(writes) <= MAX_POINTS
        # the reconcile's six children and status, and the control loop's scale and ConfigMap writes are all in it
        assert sum(w.startswith("POST") for w in writes) == 6, writes
        assert any("/deployments/chat" in w and w.startswith("PATCH") for w in writes), writes
        assert any("/configmaps/chat-runtime" in w for w in writes), writes
        assert any(w.endswith("/inferenceservices/chat/status") for w in writes), writes
        results = [crash_at(bench, k) for k in range(1, len(writes) + 1)]
    failed = [(r.point, r.write, r.verdict.summary(), r.state_lost) for r in results if not r.ok]
    assert not failed, failed
