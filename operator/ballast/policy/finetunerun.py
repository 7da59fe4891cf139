"""A FineTuneRun's reconcile, decided: Pending -> Planning -> Training -> Gating -> terminal.

`RunObservation -> decide_run -> RunAction`. Level-based: the same observation always gives the
same step, so a restarted operator resumes a run where the cluster says it is, and never creates a
second Job for a stage. Each step does one thing; the handler maps it to one small function.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ballast.api.common import Condition, ModelRef, Verdict
from ballast.api.conditions import Reason, RunCondition
from ballast.api.contracts import BaseEvaluation, GateReport, RunPlan, TerminationReport, TrainResult
from ballast.api.finetunepool import FineTunePoolSpec
from ballast.api.finetunerun import (
    TERMINAL_PHASES,
    FineTuneRunSpec,
    FineTuneRunStatus,
    JobNames,
    Phase,
    PlanSummary,
    RunKind,
    SampleSnapshot,
)
from ballast.policy.conditions import Event, set_condition
from ballast.policy.eligibility import release_eligibility
from ballast.policy.manifests import Stage, job_name
from ballast.policy.recipe import looser_than_pool
from ballast.policy.results import gate_evidence, gate_report_problem, gate_results, judge_report, train_result_problem
from ballast.policy.summary import summarize_run

# Seed section 5: never fine-tune on fewer than 50 samples (hand-made runs included).
MIN_FINETUNE_SAMPLES = 50


class JobState(StrEnum):
    MISSING = "Missing"
    ACTIVE = "Active"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobView:
    state: JobState
    reason: str = ""  # a failed Job's condition reason (BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy, ...)
    detail: str = ""  # why it failed: the trainer's error document, else the pod's termination
    foreign: str = ""  # why the Job under the run's name is not the one the operator built
    reported: TerminationReport | None = None  # what its succeeded pod wrote to its termination message
    suspended: bool = False  # an active Job that is suspended: waiting for Kueue (or a person) to admit it
    queue: str = ""  # the Kueue queue it waits in (its kueue.x-k8s.io/queue-name label)


NO_JOB = JobView(JobState.MISSING)


@dataclass(frozen=True)
class RunSummary:
    """What a pool or a release needs to know of one run."""

    name: str
    number: int  # N of `<pool>-run-N`; 0 for a run a person named
    kind: RunKind
    phase: Phase
    verdict: Verdict | None
    approved_by: str | None  # a Review's approver, once the operator verified the approval
    sample_count: int  # the size of its frozen snapshot
    model: ModelRef | None
    base_version: str
    created: datetime
    report_uri: str | None = None
    base_evaluation: BaseEvaluation | None = None  # the base's figures its gate measured
    snapshot: SampleSnapshot | None = None  # the samples it was planned on

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES


@dataclass(frozen=True)
class RunObservation:
    name: str
    generation: int | None
    now: datetime
    spec: FineTuneRunSpec
    status: FineTuneRunStatus
    pool_problem: tuple[Reason, str] | None  # the pool is missing or unusable
    pool: FineTunePoolSpec | None = None
    plan: RunPlan | None = None  # read back, its bytes matching status.plan.digest
    train: JobView = NO_JOB
    train_result: TrainResult | None = None  # the document the training Job reported, bytes matching
    gate: JobView = NO_JOB
    gate_report: GateReport | None = None  # the document the gate Job reported, bytes matching
    result_problem: str = ""  # a reported result that could not be read back as reported
    approval_authorized: bool | None = None  # the approver may approve (a SubjectAccessReview); None: unasked

    @property
    def snapshot(self) -> SampleSnapshot | None:
        return self.spec.snapshot or self.status.snapshot

    @property
    def snapshot_size(self) -> int:
        return self.snapshot.sample_count if self.snapshot else 0


class RunStep(StrEnum):
    FINISHED = "Finished"  # terminal: only the Approved condition may still change
    FREEZE_SNAPSHOT = "FreezeSnapshot"  # a hand-made run: freeze the pool's samples now
    PLAN = "Plan"
    CREATE_JOB = "CreateJob"
    WAIT = "Wait"
    RECORD_TRAINED = "RecordTrained"
    RECORD_VERDICT = "RecordVerdict"
    FAIL = "Fail"


@dataclass(frozen=True)
class RunAction:
    step: RunStep
    status: FineTuneRunStatus
    events: tuple[Event, ...] = ()
    stage: Stage | None = None  # CREATE_JOB: the Job to create


def training_stage(spec: FineTuneRunSpec) -> Stage:
    return "rebase" if spec.kind == "Rebase" else "train"


def approval_condition(
    status: FineTuneRunStatus, spec: FineTuneRunSpec, name: str, authorized: bool | None
) -> tuple[bool, Reason, str]:
    """Approved: Pass, or Review with an approval of this very model by a user allowed to approve."""
    if status.verdict is None:
        return False, Reason.WAITING, "no verdict yet"
    approval, model = spec.approval, status.model
    approver = None
    if status.verdict == "Review" and approval is not None:
        if model is None or approval.model_digest != model.digest:
            return False, Reason.APPROVAL_STALE, f"the approval by {approval.by} covers another model than this run's"
        if authorized is not True:
            return (
                False,
                Reason.APPROVER_NOT_AUTHORIZED,
                f"{approval.by} may not approve runs here (the `approve` verb on finetuneruns)",
            )
        approver = approval.by
    decision = release_eligibility(model.version if model else "?", name, status.phase, status.verdict, approver)
    return decision.allowed, decision.reason, decision.message


class _Builder:
    """Status changes of one decision: conditions set with this reconcile's time and generation."""

    def __init__(self, obs: RunObservation) -> None:
        self.obs = obs
        self.conditions: list[Condition] = list(obs.status.conditions)

    def condition(self, type_: str, ok: bool, reason: Reason, message: str) -> None:
        self.conditions = set_condition(self.conditions, type_, ok, reason, message, self.obs.now, self.obs.generation)

    def status(self, **changes: object) -> FineTuneRunStatus:
        """The new status: `changes`, these conditions, the Approved condition they imply, and the
        kstatus summary (Ready, Reconciling, Stalled)."""
        obs = self.obs
        draft = obs.status.evolve(**changes)
        ok, reason, message = approval_condition(draft, obs.spec, obs.name, obs.approval_authorized)
        self.condition(RunCondition.APPROVED, ok, reason, message)
        return summarize_run(draft.evolve(conditions=self.conditions, observed_generation=obs.generation), obs.now)


def _fail(obs: RunObservation, reason: Reason, message: str, stage: Stage | None = None) -> RunAction:
    """Failed, the message starting with the reason (kubectl shows the message, not the events)."""
    builder = _Builder(obs)
    message = (message if message.startswith(f"{reason}:") else f"{reason}: {message}")[:1000]
    if stage in ("train", "rebase"):
        builder.condition(RunCondition.TRAINED, False, Reason.JOB_FAILED, message)
    status = builder.status(phase="Failed", message=message, finished_at=obs.now, queued=None)
    return RunAction(RunStep.FAIL, status, (Event(reason, message, warning=True),), stage=stage)


def job_refused(obs: RunObservation, stage: Stage, message: str) -> RunAction:
    """The apiserver refused the stage's Job as invalid (a pool's `jobs` volume source it cannot
    accept): the run fails naming what was refused, since a retry would be refused the same way."""
    return _fail(obs, Reason.JOB_REFUSED, f"the apiserver refused Job {job_name(obs.name, stage)}: {message}", stage)


def _job_failure(obs: RunObservation, reason: Reason, stage: Stage, job: JobView) -> RunAction:
    message = f"{reason}: Job {job_name(obs.name, stage)} {job.reason or 'failed'}"
    if job.detail:
        message += f": {job.detail}"
    return _fail(obs, reason, message, stage)


def _stage_step(obs: RunObservation, stage: Stage, job: JobView, phase: Phase) -> RunAction | None:
    """Create, wait for, or fail on a stage's Job; None once it succeeded (the caller reads its result)."""
    builder = _Builder(obs)
    name = job_name(obs.name, stage)
    jobs = obs.status.jobs.evolve(**{"gate" if stage == "gate" else "train": name})
    if job.foreign:
        return _fail(obs, Reason.JOB_NOT_OURS, f"Job {name} is not the one the operator built: {job.foreign}", stage)
    if job.state is JobState.MISSING:
        # A Job named to a Kueue queue is created suspended: it waits from the start.
        queue = obs.pool.jobs.queue_name if obs.pool is not None else None
        status, events = _job_waiting(builder, stage, phase, jobs, queue)
        return RunAction(RunStep.CREATE_JOB, status, (Event(Reason.CREATED_JOB, f"Created Job {name}"), *events), stage)
    if job.state is JobState.ACTIVE:
        status, events = _job_waiting(builder, stage, phase, jobs, (job.queue or NO_QUEUE) if job.suspended else None)
        return RunAction(RunStep.WAIT, status, events)
    if job.state is JobState.FAILED:
        return _job_failure(obs, Reason.GATING_FAILED if stage == "gate" else Reason.TRAINING_FAILED, stage, job)
    return None


# What status.queued says of a suspended Job that names no Kueue queue (suspended by hand).
NO_QUEUE = "(no queue)"


def _job_waiting(
    builder: _Builder, stage: Stage, phase: Phase, jobs: JobNames, queued: str | None
) -> tuple[FineTuneRunStatus, tuple[Event, ...]]:
    """A stage's Job that has not finished: running, or suspended in a queue (`queued`), which the
    message, status.queued (a printer column) and, for training, the Trained condition say. The
    Queued event is posted once, when the run starts waiting in that queue."""
    name = job_name(builder.obs.name, stage)
    if queued is None:
        message = f"Job {name} running"
        if stage != "gate":
            builder.condition(RunCondition.TRAINED, False, Reason.JOB_RUNNING, message)
        return builder.status(phase=phase, jobs=jobs, message=message, queued=None), ()
    where = f"in Kueue queue {queued}" if queued != NO_QUEUE else "(it names no Kueue queue)"
    message = f"{Reason.QUEUED}: Job {name} is suspended {where} until it is admitted"
    if stage != "gate":
        builder.condition(RunCondition.TRAINED, False, Reason.QUEUED, message)
    events = () if builder.obs.status.queued == queued else (Event(Reason.QUEUED, message),)
    return builder.status(phase=phase, jobs=jobs, message=message, queued=queued), events


def decide_run(obs: RunObservation) -> RunAction:
    status, spec = obs.status, obs.spec
    if status.phase in TERMINAL_PHASES:
        return RunAction(RunStep.FINISHED, _Builder(obs).status())
    if obs.pool_problem is not None:
        return _fail(obs, *obs.pool_problem)
    builder = _Builder(obs)
    started = {"started_at": status.started_at or obs.now}
    if status.plan is None:
        snapshot = obs.snapshot
        if snapshot is None:
            return RunAction(RunStep.FREEZE_SNAPSHOT, builder.status(**started))
        looser = looser_than_pool(spec, obs.pool, snapshot.sample_count) if obs.pool else []
        if looser:
            message = "the run asks to be judged more loosely than its pool: " + "; ".join(looser)
            builder.condition(RunCondition.PLANNED, False, Reason.PLAN_REFUSED, message)
            refused = builder.status(phase="Failed", message=message, finished_at=obs.now, snapshot=snapshot)
            return RunAction(RunStep.FAIL, refused, (Event(Reason.LOOSER_THAN_POOL, message, warning=True),))
        if spec.kind == "FineTune" and snapshot.sample_count < MIN_FINETUNE_SAMPLES:
            message = (
                f"the pool snapshot holds {snapshot.sample_count} verified samples; never fine-tune on fewer than "
                f"{MIN_FINETUNE_SAMPLES} (seed section 5)"
            )
            builder.condition(RunCondition.PLANNED, False, Reason.PLAN_REFUSED, message)
            refused = builder.status(phase="Failed", message=message, finished_at=obs.now, snapshot=snapshot)
            return RunAction(RunStep.FAIL, refused, (Event(Reason.TOO_FEW_SAMPLES, message, warning=True),))
        return RunAction(RunStep.PLAN, builder.status(phase="Planning", snapshot=snapshot, **started))

    if status.model is None:
        stage = training_stage(spec)
        waiting = _stage_step(obs, stage, obs.train, "Training")
        if waiting is not None:
            return waiting
        result = obs.train_result
        if obs.result_problem:
            return _fail(obs, Reason.RESULT_UNVERIFIED, f"training result not accepted: {obs.result_problem}", stage)
        if result is None or obs.plan is None:
            return _fail(obs, Reason.TRAIN_RESULT_MISSING, "the training Job succeeded but wrote no TrainResult", stage)
        problem = train_result_problem(result, obs.plan)
        if problem:
            return _fail(obs, Reason.RESULT_UNVERIFIED, f"training result not accepted: {problem}", stage)
        builder.condition(
            RunCondition.TRAINED,
            True,
            Reason.JOB_SUCCEEDED,
            f"{result.model.version} trained in {result.seconds:.0f} s",
        )
        trained = builder.status(
            phase="Gating",
            model=result.model,
            lineage_uri=result.lineage_uri,
            trained_at=obs.now,
            message="trained; gating",
        )
        event = Event(Reason.TRAINED, f"Trained {result.model.version} ({result.model.digest[:19]}...)")
        return RunAction(RunStep.RECORD_TRAINED, trained, (event,))

    waiting = _stage_step(obs, "gate", obs.gate, "Gating")
    if waiting is not None:
        return waiting
    report = obs.gate_report
    if obs.result_problem:
        return _fail(obs, Reason.RESULT_UNVERIFIED, f"gate report not accepted: {obs.result_problem}", "gate")
    if report is None or obs.plan is None:
        return _fail(obs, Reason.GATE_REPORT_MISSING, "the gate Job succeeded but wrote no GateReport", "gate")
    problem = gate_report_problem(report, obs.plan, status.model)
    if problem:
        return _fail(obs, Reason.RESULT_UNVERIFIED, f"gate report not accepted: {problem}", "gate")
    return _record_verdict(obs, builder, report, obs.plan)


GATE_CONDITIONS = {
    "Gate1Regression": RunCondition.GATE1_REGRESSION,
    "Gate2NewSamples": RunCondition.GATE2_NEW_SAMPLES,
    "Gate3ABComparison": RunCondition.GATE3_AB_COMPARISON,
}
VERDICT_REASONS = {"Pass": Reason.PASS, "Review": Reason.REVIEW, "Reject": Reason.REJECT}


def _record_verdict(obs: RunObservation, builder: _Builder, report: GateReport, plan: RunPlan) -> RunAction:
    """The operator's own verdict: the report's figures through the plan's gates."""
    judgement = judge_report(report, plan)
    events = []
    for gate in gate_results(judgement):
        builder.condition(
            GATE_CONDITIONS[gate.name], gate.verdict == "Pass", VERDICT_REASONS[gate.verdict], gate.reason
        )
        events.append(
            Event(VERDICT_REASONS[gate.verdict], f"{gate.name} {gate.verdict}: {gate.reason}", gate.verdict != "Pass")
        )
    if judgement.gate3 is None:
        builder.condition(
            RunCondition.GATE3_AB_COMPARISON, True, Reason.DISABLED, "gates.abComparison.enabled is false"
        )
    status = builder.status(
        phase="Succeeded",
        verdict=judgement.verdict,
        gates=gate_evidence(report, plan, judgement, obs.status.gates.report_uri or ""),
        finished_at=obs.now,
        message=f"verdict {judgement.verdict}",
    )
    return RunAction(RunStep.RECORD_VERDICT, status, tuple(events))


def plan_refused(obs: RunObservation, reason: Reason, message: str) -> RunAction:
    """The plan would break a seed rule (too few samples since the base, too small an anchor set):
    Failed before any Job, Planned False naming the rule, a warning event."""
    builder = _Builder(obs)
    builder.condition(RunCondition.PLANNED, False, reason, message)
    status = builder.status(
        phase="Failed", message=f"{reason}: {message}"[:1000], finished_at=obs.now, snapshot=obs.snapshot
    )
    return RunAction(RunStep.FAIL, status, (Event(reason, message, warning=True),))


def planned(obs: RunObservation, summary: PlanSummary, version: str) -> RunAction:
    """The PLAN step's outcome once the plan is written: its summary in status, Planned, an event
    (and a warning when the anchor set was smaller than the table asks for)."""
    builder = _Builder(obs)
    held = f" (+{summary.held_out_samples} held out)" if summary.held_out_samples else ""
    message = f"{summary.new_samples} new{held} + {summary.old_samples} old samples, seed {summary.seed} -> {version}"
    events = [
        Event(Reason.PLAN_WRITTEN, f"{obs.spec.kind} {version} from {obs.spec.base_model.version}: {summary.rule}")
    ]
    if obs.spec.retry_of:
        events.append(Event(Reason.RETRY, f"Retries {obs.spec.retry_of} on the same {obs.snapshot_size} samples"))
    reason = Reason.PLAN_WRITTEN
    if summary.anchor_shortfall:
        reason = Reason.ANCHOR_SHORTFALL
        shortfall = (
            f"the anchor set lacks {summary.anchor_shortfall} of the old samples the table asks for; "
            f"training with all {summary.old_samples} (mixing.allowSmallerAnchor)"
        )
        message = f"{message}; {shortfall}"
        events.append(Event(Reason.ANCHOR_SHORTFALL, shortfall, warning=True))
    builder.condition(RunCondition.PLANNED, True, reason, message)
    status = builder.status(
        phase="Planning",
        snapshot=obs.snapshot,
        started_at=obs.status.started_at or obs.now,
        plan=summary,
        message="plan written",
    )
    return RunAction(RunStep.PLAN, status, tuple(events))
