"""The autoscaler's timer ticks at the control period (no per-second work per service), which comes from
`--control-period`, else SHOAL_AUTOSCALER_PERIOD_SECONDS, else 15 s; each run gets its own registry."""

from __future__ import annotations

import argparse

import kopf
import pytest
from operator_harness import operator_config

from shoal.operator import autoscaler, commands
from shoal.operator.config import PERIOD_ENV
from shoal.operator.main import operator_registry


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    return parser.parse_args(["operator", "-A", *argv])


def timers(registry: kopf.OperatorRegistry) -> list:
    return [h for h in registry._spawning.get_all_handlers() if h.id == autoscaler.TIMER_ID]


def test_timer_ticks_at_the_period_without_a_finalizer():
    registry = operator_registry(operator_config(control_period_s=7.5))
    [timer] = timers(registry)
    assert timer.interval == 7.5 and timer.sharp
    assert not timer.requires_finalizer  # the operator may only write InferenceService status
    # the module-level handlers came along (reconcile, startup, cleanup)
    assert registry._changing.get_all_handlers() or registry._watching.get_all_handlers()
    assert registry._activities.get_all_handlers()


def test_repeated_runs_do_not_stack_timers():
    first = operator_registry(operator_config(control_period_s=2.0))
    second = operator_registry(operator_config(control_period_s=3.0))
    assert [t.interval for t in timers(first)] == [2.0] and [t.interval for t in timers(second)] == [3.0]
    assert timers(kopf.get_default_registry()) == []


def test_period_from_flag_then_environment_then_default(monkeypatch):
    monkeypatch.delenv(PERIOD_ENV, raising=False)
    assert commands.config_from_args(parse()).control_period_s == 15.0
    monkeypatch.setenv(PERIOD_ENV, "2")
    assert commands.config_from_args(parse()).control_period_s == 2.0
    assert commands.config_from_args(parse("--control-period", "30")).control_period_s == 30.0


def test_bad_periods_name_the_fix(monkeypatch):
    monkeypatch.setenv(PERIOD_ENV, "soon")
    with pytest.raises(ValueError, match=PERIOD_ENV):
        commands.config_from_args(parse())
    with pytest.raises(ValueError, match="--control-period"):
        operator_config(control_period_s=0.5)
