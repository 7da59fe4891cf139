"""When a pool starts a run (seed sections 2 and 5): volume, schedule, alert, and rebase."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

from ballast.api.conditions import Reason
from ballast.api.finetunepool import FineTunePoolSpec
from ballast.api.finetunerun import RunKind, Trigger

# Seed section 5: "Do NOT fine-tune with fewer than 50 samples". No trigger goes below it.
MIN_SAMPLES_FLOOR = 50


@dataclass(frozen=True)
class PoolState:
    """What the reconcile observed, frozen. Time comes in as `now`."""

    verified_samples: int
    samples_since_last_run: int
    samples_since_base: int
    active_run: str | None
    now: datetime
    next_scheduled_trigger: datetime | None = None
    pending_alert: str | None = None
    pending_alert_time: datetime | None = None
    last_alert_action_time: datetime | None = None


@dataclass(frozen=True)
class TriggerDecision:
    start: RunKind | None
    trigger: Trigger | None
    reason: Reason
    message: str
    rebase_recommended: bool
    next_scheduled_trigger: datetime | None
    alert_consumed: bool = False


def next_schedule(schedule: str, after: datetime) -> datetime:
    """The first cron time strictly after `after` (UTC)."""
    if not croniter.is_valid(schedule):
        raise ValueError(f"triggers.schedule: {schedule!r} is not a valid cron expression")
    after_utc = after.astimezone(UTC)
    return croniter(schedule, after_utc).get_next(datetime).astimezone(UTC)


def rebase_due(samples_since_base: int, threshold: int) -> bool:
    return samples_since_base >= threshold


def decide_trigger(spec: FineTunePoolSpec, state: PoolState) -> TriggerDecision:
    """Decide whether the pool starts a run now, and of which kind.

    Order: suspended, an active run (at most one per pool), a due rebase, then the fine-tune
    triggers (volume, schedule, alert), each of which needs >= 50 samples waiting.
    """
    rebase = rebase_due(state.samples_since_base, spec.rebase.threshold)
    schedule_fired = False
    next_trigger = state.next_scheduled_trigger
    if spec.triggers.schedule:
        if next_trigger is None:
            next_trigger = next_schedule(spec.triggers.schedule, state.now)
        elif next_trigger <= state.now:
            schedule_fired = True
            next_trigger = next_schedule(spec.triggers.schedule, state.now)
    else:
        next_trigger = None

    def decision(
        start: RunKind | None, trigger: Trigger | None, reason: Reason, message: str, alert_consumed: bool = False
    ) -> TriggerDecision:
        return TriggerDecision(start, trigger, reason, message, rebase, next_trigger, alert_consumed)

    waiting = state.samples_since_last_run
    alert_usable = (
        state.pending_alert is not None
        and spec.triggers.on_alert
        and (
            state.last_alert_action_time is None
            or (state.now - state.last_alert_action_time).total_seconds() >= spec.triggers.alert_cooldown_seconds
        )
    )
    if spec.suspend:
        return decision(None, None, Reason.SUSPENDED, "spec.suspend is true: no new runs")
    if state.active_run is not None:
        return decision(None, None, Reason.RUN_ACTIVE, f"run {state.active_run} is in progress (one run at a time)")
    if rebase and spec.rebase.auto_start:
        return decision(
            "Rebase",
            "RebaseDue",
            Reason.REBASE_THRESHOLD_REACHED,
            f"{state.samples_since_base} samples since the base >= {spec.rebase.threshold}: train a new base",
        )
    if waiting < MIN_SAMPLES_FLOOR:
        return decision(
            None,
            None,
            Reason.TOO_FEW_SAMPLES,
            f"{waiting} new samples waiting; never fine-tune on fewer than {MIN_SAMPLES_FLOOR}"
            + (f" (alert {state.pending_alert} waits for them)" if state.pending_alert else ""),
        )
    if waiting >= spec.triggers.min_new_samples:
        return decision(
            "FineTune",
            "Volume",
            Reason.ENOUGH_NEW_SAMPLES,
            f"{waiting} new samples >= minNewSamples {spec.triggers.min_new_samples}",
            alert_consumed=alert_usable,
        )
    if schedule_fired:
        return decision("FineTune", "Schedule", Reason.SCHEDULE_DUE, f"schedule fired with {waiting} new samples")
    if alert_usable:
        return decision(
            "FineTune",
            "Alert",
            Reason.ALERT_RECEIVED,
            f"alert {state.pending_alert} with {waiting} new samples waiting",
            alert_consumed=True,
        )
    return decision(
        None, None, Reason.NOT_DUE, f"{waiting} new samples waiting; volume trigger at {spec.triggers.min_new_samples}"
    )


def run_name(pool: str, number: int) -> str:
    """Deterministic child name: a retry of the same decision finds the same run."""
    return f"{pool[:50]}-run-{number}"
