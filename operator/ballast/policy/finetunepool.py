"""A pool's reconcile, decided: when it starts a run (seed sections 2 and 5), when it adopts a new
base, and the status it reports. `PoolObservation -> decide_pool -> PoolAction`; no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from croniter import croniter

from ballast.api import layout
from ballast.api.common import BaseModelRef, Condition, ModelRef
from ballast.api.conditions import PoolCondition, Reason
from ballast.api.contracts import BaseEvaluation
from ballast.api.finetunepool import FineTunePoolSpec, FineTunePoolStatus, RejectedSample
from ballast.api.finetunerun import RunKind, Trigger
from ballast.policy.bases import consumed_samples, effective_base, rebase_hold
from ballast.policy.conditions import Event, set_condition
from ballast.policy.eligibility import release_eligibility
from ballast.policy.finetunerun import RunSummary
from ballast.policy.summary import summarize_pool
from ballast.policy.versions import parse_version

# Seed section 5: "Do NOT fine-tune with fewer than 50 samples". No trigger goes below it.
MIN_SAMPLES_FLOOR = 50
RECENT_REJECTIONS = 5


@dataclass(frozen=True)
class PoolState:
    """The numbers the trigger policy looks at, frozen. Time comes in as `now`."""

    verified_samples: int
    samples_since_last_run: int
    samples_since_base: int
    active_run: str | None
    now: datetime
    next_scheduled_trigger: datetime | None = None
    pending_alert: str | None = None
    pending_alert_time: datetime | None = None
    last_alert_action_time: datetime | None = None
    rebase_hold: tuple[Reason, str] | None = None  # why a due Rebase may not start (see rebase_hold)


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


def alert_cooldown_over(spec: FineTunePoolSpec, state: PoolState) -> bool:
    last = state.last_alert_action_time
    return last is None or (state.now - last).total_seconds() >= spec.triggers.alert_cooldown_seconds


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
    alert_usable = state.pending_alert is not None and spec.triggers.on_alert and alert_cooldown_over(spec, state)
    if spec.suspend:
        return decision(None, None, Reason.SUSPENDED, "spec.suspend is true: no new runs")
    if state.active_run is not None:
        return decision(None, None, Reason.RUN_ACTIVE, f"run {state.active_run} is in progress (one run at a time)")
    if rebase and spec.rebase.auto_start and state.rebase_hold is None:
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


def run_number(pool: str, run: str) -> int:
    """N of a run named `<pool>-run-N`; 0 for a run a person named otherwise."""
    prefix = f"{pool[:50]}-run-"
    tail = run[len(prefix) :] if run.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else 0


# ---- the whole reconcile -----------------------------------------------------------------------
# The sample index is one empty key per verified sample, stamped with its write time (see
# ballast.api.layout). Writers run concurrently, so a key stamped earlier can appear after a later
# one was listed. The counting cursor therefore passes only keys older than SETTLE_SECONDS (by the
# writer's clock, stamped just before its PUT); younger keys are listed and counted again on every
# reconcile until they settle. A key is missed only if it became visible more than SETTLE_SECONDS
# after its stamp (a writer clock that far behind, or a stalled PUT).
SETTLE_SECONDS = 300.0


@dataclass(frozen=True)
class IndexCount:
    """The sample index, counted: every key listed (settled ones plus the young tail)."""

    total: int
    cursor: str | None  # the last settled key; listing resumes after it
    settled: int  # keys up to and including the cursor


def count_index(
    keys_after_cursor: list[str], cursor: str | None, settled: int, now: datetime, settle: float = SETTLE_SECONDS
) -> IndexCount:
    """Advance the count over the keys listed after `cursor` (sorted, as the store lists them)."""
    horizon = now - timedelta(seconds=settle)
    newly_settled = 0
    for key in keys_after_cursor:
        if layout.parse_index_key(key).written_at >= horizon:
            break
        newly_settled += 1
    if newly_settled:
        cursor = keys_after_cursor[newly_settled - 1]
    return IndexCount(total=settled + len(keys_after_cursor), cursor=cursor, settled=settled + newly_settled)


@dataclass(frozen=True)
class PoolObservation:
    name: str
    generation: int | None
    now: datetime
    spec: FineTunePoolSpec
    status: FineTunePoolStatus
    index: IndexCount
    new_rejections: tuple[RejectedSample, ...]
    rejection_cursor: str | None
    runs: tuple[RunSummary, ...]  # this pool's runs, oldest first


class PoolStep(StrEnum):
    UPDATE_STATUS = "UpdateStatus"
    ADOPT_BASE = "AdoptBase"
    START_RUN = "StartRun"


@dataclass(frozen=True)
class RunToStart:
    name: str
    kind: RunKind
    trigger: Trigger
    base: BaseModelRef


@dataclass(frozen=True)
class PoolAction:
    step: PoolStep
    status: FineTunePoolStatus
    events: tuple[Event, ...] = ()
    adopt: ModelRef | None = None  # ADOPT_BASE: the Rebase model to publish as the pool's base
    adopted: ModelRef | None = None  # ...and where it lands
    start: RunToStart | None = None  # START_RUN
    wake_at: datetime | None = None  # the next moment the decision may change by time alone


def adoptable_rebase(obs: PoolObservation) -> RunSummary | None:
    """The newest finished Rebase run whose model may serve as a base and is newer than the current one."""
    current = parse_version(effective_base(obs.spec, obs.status).version).base
    best = None
    for run in obs.runs:
        if run.kind != "Rebase" or run.model is None:
            continue
        eligible = release_eligibility(run.model.version, run.name, run.phase, run.verdict, run.approved_by)
        if eligible.allowed and parse_version(run.model.version).base > current:
            best, current = run, parse_version(run.model.version).base
    return best


def _wake_at(spec: FineTunePoolSpec, state: PoolState, decision: TriggerDecision) -> datetime | None:
    """When time alone can change the decision: the next cron time, or the end of an alert cooldown."""
    moments = [decision.next_scheduled_trigger] if decision.next_scheduled_trigger else []
    if state.pending_alert and state.last_alert_action_time and not alert_cooldown_over(spec, state):
        moments.append(state.last_alert_action_time + timedelta(seconds=spec.triggers.alert_cooldown_seconds))
    return min(moments) if moments else None


def decide_pool(obs: PoolObservation) -> PoolAction:
    spec, status, now = obs.spec, obs.status, obs.now
    verified = obs.index.total
    rebase = adoptable_rebase(obs)
    if rebase is not None and rebase.model is not None:
        adopted = rebase.model.evolve(
            uri=layout.s3_uri(
                spec.object_store.bucket,
                spec.object_store.prefix,
                layout.released_model(obs.name, rebase.model.version),
            )
        )
        status = status.evolve(
            current_base_model=adopted, base_sample_count=rebase.sample_count, base_snapshot=rebase.snapshot
        )
        status = summarize_pool(status, now)
        event = Event(Reason.ADOPTED_BASE, f"Adopted new base {adopted.version} from Rebase run {rebase.name}")
        return PoolAction(PoolStep.ADOPT_BASE, status, (event,), adopt=rebase.model, adopted=adopted)

    active = [r.name for r in obs.runs if not r.terminal]
    last_run_samples = consumed_samples(obs.runs, status.base_sample_count)
    base = effective_base(spec, status)
    state = PoolState(
        verified_samples=verified,
        samples_since_last_run=max(0, verified - last_run_samples),
        samples_since_base=max(0, verified - status.base_sample_count),
        active_run=active[0] if active else None,
        now=now,
        next_scheduled_trigger=status.next_scheduled_trigger,
        pending_alert=status.pending_alert,
        pending_alert_time=status.pending_alert_time,
        last_alert_action_time=status.last_alert_action_time,
        rebase_hold=rebase_hold(obs.runs, base.version, verified, spec.triggers.min_new_samples),
    )
    try:
        decision = decide_trigger(spec, state)
    except ValueError as error:  # an invalid cron expression
        return PoolAction(PoolStep.UPDATE_STATUS, spec_invalid(status, str(error), now, obs.generation))

    numbers = [r.number for r in obs.runs]
    counter = max([*numbers, status.run_counter, 0])
    start = None
    if decision.start is not None:
        counter += 1
        start = RunToStart(run_name(obs.name, counter), decision.start, decision.trigger or "Manual", base)
        last_run_samples = verified

    def condition(conditions: list[Condition], type_: str, ok: bool, reason: Reason, message: str) -> list[Condition]:
        return set_condition(conditions, type_, ok, reason, message, now, obs.generation)

    conditions = condition(
        status.conditions, PoolCondition.READY, True, Reason.SAMPLES_LISTED, f"{verified} verified samples"
    )
    conditions = condition(
        conditions, PoolCondition.RUN_DUE, start is not None or bool(active), decision.reason, decision.message
    )
    rebase_reason, rebase_message = (
        (Reason.REBASE_THRESHOLD_REACHED, "") if decision.rebase_recommended else (Reason.BELOW_REBASE_THRESHOLD, "")
    )
    if decision.rebase_recommended and state.rebase_hold is not None:
        rebase_reason, rebase_message = state.rebase_hold[0], f": {state.rebase_hold[1]}"
    conditions = condition(
        conditions,
        PoolCondition.REBASE_RECOMMENDED,
        decision.rebase_recommended,
        rebase_reason,
        f"{state.samples_since_base} samples since {base.version}; rebase at {spec.rebase.threshold}{rebase_message}",
    )
    rejections = [*status.recent_rejections, *obs.new_rejections][-RECENT_REJECTIONS:]
    evaluations = base_evaluations(status.base_evaluations, obs.runs)
    alert_changes: dict[str, object] = {}
    if decision.alert_consumed:
        alert_changes |= {"pending_alert": None, "pending_alert_time": None}
    if decision.alert_consumed or (start is not None and decision.trigger == "Alert"):
        alert_changes["last_alert_action_time"] = now
    status = status.evolve(
        observed_generation=obs.generation,
        verified_samples=verified,
        index_cursor=obs.index.cursor,
        settled_samples=obs.index.settled,
        rejection_cursor=obs.rejection_cursor,
        rejected_samples=status.rejected_samples + len(obs.new_rejections),
        recent_rejections=rejections,
        samples_since_last_run=max(0, verified - last_run_samples),
        samples_since_base=state.samples_since_base,
        current_base=base.version,
        active_run=start.name if start else state.active_run,
        last_run=start.name if start else (obs.runs[-1].name if obs.runs else None),
        last_run_sample_count=last_run_samples,
        run_counter=counter,
        next_scheduled_trigger=decision.next_scheduled_trigger,
        conditions=conditions,
        base_evaluations=evaluations,
        **alert_changes,
    )
    status = summarize_pool(status, now)
    if start is None:
        return PoolAction(PoolStep.UPDATE_STATUS, status, wake_at=_wake_at(spec, state, decision))
    event = Event(Reason.CREATED_RUN, f"Created FineTuneRun {start.name} ({start.kind}, {decision.message})")
    return PoolAction(PoolStep.START_RUN, status, (event,), start=start, wake_at=_wake_at(spec, state, decision))


KEPT_EVALUATIONS = 5


def base_evaluations(kept: list[BaseEvaluation], runs: tuple[RunSummary, ...]) -> list[BaseEvaluation]:
    """The bases' Gate 1 figures the pool's verified gate Jobs measured, newest last, one per
    (base, test set, image size): later plans hand them to their gate instead of a bucket cache."""
    found = {(e.base_digest, e.test_manifest_digest, e.imgsz): e for e in kept}
    for run in runs:
        if run.base_evaluation is not None:
            e = run.base_evaluation
            found.pop((e.base_digest, e.test_manifest_digest, e.imgsz), None)
            found[(e.base_digest, e.test_manifest_digest, e.imgsz)] = e
    return list(found.values())[-KEPT_EVALUATIONS:]


def spec_invalid(status: FineTunePoolStatus, message: str, now: datetime, generation: int | None) -> FineTunePoolStatus:
    """Ready=False SpecInvalid naming the field, and Stalled: this generation was seen and refused."""
    conditions = set_condition(
        status.conditions, PoolCondition.READY, False, Reason.SPEC_INVALID, message, now, generation
    )
    return summarize_pool(status.evolve(conditions=conditions, observed_generation=generation), now)


def store_unreachable(
    status: FineTunePoolStatus, message: str, now: datetime, generation: int | None
) -> FineTunePoolStatus:
    """Ready=False ObjectStoreUnreachable: a pool has no message field, its Ready condition says it."""
    conditions = set_condition(
        status.conditions, PoolCondition.READY, False, Reason.STORE_UNREACHABLE, message[:500], now, generation
    )
    return summarize_pool(status.evolve(conditions=conditions, observed_generation=generation), now)
