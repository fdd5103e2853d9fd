"""The real operator (its own process, real kopf over HTTP) against the emulator failing 10% of its API calls
(409, 429, 500, hang-then-drop, cut watches): 100 reconciles of creates, updates and deletes end in exactly the
desired state, with no duplicate and no orphaned child. bench/reliability_api.py runs the 1,000-reconcile version."""

from __future__ import annotations

from api_faults_harness import run_fault_campaign


def test_100_reconciles_at_10_percent_faults_end_in_the_desired_state(tmp_path):
    # one change every 50 ms: a faster stream mostly coalesces (a hung call holds the one worker for 0.5 s)
    run = run_fault_campaign(tmp_path, reconciles=100, rate=0.10, seed=9, pool=30, watch_drop=0.5, pace_s=0.05,
                             converge_timeout=90)
    verdict, faults = run.verdict, run.faults
    assert verdict.clean, verdict.summary()
    assert not verdict.duplicates and not verdict.orphans and verdict.lost() == 0
    assert run.reconciles >= 100 and run.changes.deletes > 0 and run.changes.updates > 0
    assert verdict.services > 0 and verdict.children == 6 * verdict.services  # six kinds, ServiceMonitor included
    # the faults did happen, of every request kind, at about the configured rate
    assert all(faults["injected"][k] > 0 for k in ("conflict", "throttle", "error", "timeout")), faults
    assert 0.06 < (faults["total"] - faults["injected"]["watch_drop"]) / faults["calls"] < 0.14, faults
