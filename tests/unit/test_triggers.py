from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from ballast.policy.finetunepool import PoolState, decide_trigger, next_schedule, run_name

from .builders import T0, a_pool_spec


def a_state(**overrides: object) -> PoolState:
    state = PoolState(verified_samples=0, samples_since_last_run=0, samples_since_base=0, active_run=None, now=T0)
    return replace(state, **overrides)  # type: ignore[arg-type]


def waiting(n: int, **overrides: object) -> PoolState:
    return a_state(verified_samples=n, samples_since_last_run=n, samples_since_base=n, **overrides)


@pytest.mark.parametrize(
    ("samples", "starts"),
    [
        pytest.param(49, None, id="49 samples do not trigger (seed: pool >= 50?)"),
        pytest.param(50, "FineTune", id="50 samples trigger a fine-tune"),
        pytest.param(51, "FineTune", id="51 samples trigger a fine-tune"),
    ],
)
def test_the_volume_trigger(samples: int, starts: str | None) -> None:
    decision = decide_trigger(a_pool_spec(), waiting(samples))
    assert decision.start == starts
    if starts:
        assert decision.trigger == "Volume"


def test_samples_already_used_by_the_last_run_do_not_count() -> None:
    state = a_state(verified_samples=120, samples_since_last_run=49, samples_since_base=120)
    assert decide_trigger(a_pool_spec(), state).start is None


def test_a_higher_min_new_samples_waits_longer() -> None:
    spec = a_pool_spec(triggers={"minNewSamples": 100})
    assert decide_trigger(spec, waiting(99)).start is None
    assert decide_trigger(spec, waiting(100)).start == "FineTune"


def test_min_new_samples_below_50_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="minNewSamples|min_new_samples"):
        a_pool_spec(triggers={"minNewSamples": 49})


def test_at_most_one_active_run_per_pool() -> None:
    decision = decide_trigger(a_pool_spec(), waiting(500, active_run="p-run-1"))
    assert decision.start is None
    assert "p-run-1" in decision.message


def test_a_suspended_pool_starts_nothing() -> None:
    assert decide_trigger(a_pool_spec(suspend=True), waiting(500)).start is None


HOURLY = a_pool_spec(triggers={"minNewSamples": 200, "schedule": "0 * * * *"})


def test_the_schedule_fires_when_50_samples_wait_even_below_min_new_samples() -> None:
    due = T0 - timedelta(minutes=1)
    decision = decide_trigger(HOURLY, waiting(60, next_scheduled_trigger=due))
    assert (decision.start, decision.trigger) == ("FineTune", "Schedule")
    assert decision.next_scheduled_trigger == datetime(2026, 11, 26, 13, 0, tzinfo=UTC)


def test_the_schedule_never_fires_below_50_samples() -> None:
    decision = decide_trigger(HOURLY, waiting(49, next_scheduled_trigger=T0 - timedelta(minutes=1)))
    assert decision.start is None
    assert decision.next_scheduled_trigger > T0  # the missed firing is not kept pending


def test_the_schedule_waits_for_its_time() -> None:
    decision = decide_trigger(HOURLY, waiting(60, next_scheduled_trigger=T0 + timedelta(minutes=5)))
    assert decision.start is None


def test_a_first_reconcile_computes_the_next_scheduled_time() -> None:
    decision = decide_trigger(HOURLY, waiting(0))
    assert decision.next_scheduled_trigger == datetime(2026, 11, 26, 13, 0, tzinfo=UTC)


def test_an_invalid_cron_is_reported_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"triggers\.schedule"):
        next_schedule("every tuesday", T0)


ALERTED = {"pending_alert": "DetectionRateLow", "pending_alert_time": T0}


def test_an_alert_starts_a_run_when_50_samples_wait() -> None:
    spec = a_pool_spec(triggers={"minNewSamples": 200})
    decision = decide_trigger(spec, waiting(50, **ALERTED))
    assert (decision.start, decision.trigger, decision.alert_consumed) == ("FineTune", "Alert", True)


def test_an_alert_never_starts_a_run_below_50_samples() -> None:
    decision = decide_trigger(a_pool_spec(), waiting(10, **ALERTED))
    assert decision.start is None


def test_a_repeated_alert_inside_the_cooldown_starts_nothing() -> None:
    spec = a_pool_spec(triggers={"minNewSamples": 200, "alertCooldownSeconds": 3600})
    recent = waiting(60, last_alert_action_time=T0 - timedelta(minutes=10), **ALERTED)
    assert decide_trigger(spec, recent).start is None
    later = waiting(60, last_alert_action_time=T0 - timedelta(hours=2), **ALERTED)
    assert decide_trigger(spec, later).trigger == "Alert"


def test_alerts_are_ignored_when_the_pool_opts_out() -> None:
    spec = a_pool_spec(triggers={"minNewSamples": 200, "onAlert": False})
    assert decide_trigger(spec, waiting(60, **ALERTED)).start is None


@pytest.mark.parametrize(
    ("since_base", "rebase"),
    [
        pytest.param(1999, False, id="1999 samples since the base: no rebase"),
        pytest.param(2000, True, id="2000 samples since the base: rebase (seed section 2)"),
    ],
)
def test_a_rebase_is_recommended_at_2000_samples(since_base: int, rebase: bool) -> None:
    state = a_state(verified_samples=since_base, samples_since_last_run=10, samples_since_base=since_base)
    decision = decide_trigger(a_pool_spec(), state)
    assert decision.rebase_recommended is rebase
    assert decision.start == ("Rebase" if rebase else None)


def test_a_due_rebase_waits_for_the_active_run() -> None:
    decision = decide_trigger(a_pool_spec(), waiting(2500, active_run="p-run-3"))
    assert decision.start is None and decision.rebase_recommended


def test_a_rebase_without_auto_start_is_only_recommended() -> None:
    spec = a_pool_spec(rebase={"autoStart": False})
    decision = decide_trigger(spec, waiting(2500))
    assert decision.rebase_recommended and decision.start == "FineTune"


def test_run_names_are_deterministic() -> None:
    assert run_name("invoices", 3) == run_name("invoices", 3) == "invoices-run-3"
    assert len(run_name("x" * 63, 99999)) <= 63
