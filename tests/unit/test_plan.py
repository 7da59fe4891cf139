"""The plan: which new samples are held out as unseen evidence, and which model serves now."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from ballast.api.contracts import RunPlan
from ballast.api.modelrelease import ModelReleaseStatus, ReleaseRecord
from ballast.api.params import NewSampleGate
from ballast.api.samples import SampleRef
from ballast.policy.gates import VersusServing, judged_documents, new_sample_gate, versus_serving
from ballast.policy.plan import PlanRefused, build_plan, hold_out, holdout_position, serving_model

from .builders import DIGEST, T0, a_model, a_pool_spec, a_run_spec


def refs(n: int) -> list[SampleRef]:
    return [
        SampleRef(
            image=f"pool/p/samples/{i}/image.png", image_digest=f"sha256:{i:064x}", label_digest=f"sha256:{i:064x}"
        )
        for i in range(n)
    ]


def below(samples: list[SampleRef], share: float) -> int:
    return sum(holdout_position(r.image_digest) < share for r in samples)


@pytest.mark.parametrize(
    ("samples", "share"),
    [
        pytest.param(50, 0.2, id="at 50 samples none is held out: never fine-tune on fewer than 50"),
        pytest.param(60, 0.2, id="at 60, at most the 10 above 50 are held out"),
        pytest.param(1000, 0.2, id="at 1000, the samples whose digest falls under a fifth are held out"),
        pytest.param(500, 0.0, id="a share of 0 holds out none (the seed's all new samples)"),
    ],
)
def test_how_many_new_samples_are_held_out(samples: int, share: float) -> None:
    pool = refs(samples)
    trained, held_out = hold_out(pool, share, keep=50)
    assert len(held_out) == min(below(pool, share), samples - 50)
    assert len(trained) + len(held_out) == samples and len(trained) >= 50
    assert not {r.image for r in trained} & {r.image for r in held_out}


def test_about_the_share_is_held_out_of_a_large_pool() -> None:
    _, held_out = hold_out(refs(1000), 0.2, keep=50)
    assert 150 < len(held_out) < 250


def test_a_sample_held_out_stays_held_out_whatever_order_the_pool_lists_them_in() -> None:
    samples = refs(100)
    _, first = hold_out(samples, 0.2, keep=50)
    _, again = hold_out(list(reversed(samples)), 0.2, keep=50)
    assert {r.image for r in first} == {r.image for r in again}


def test_as_the_pool_grows_no_sample_changes_side() -> None:
    trained_then, held_then = hold_out(refs(200), 0.2, keep=50)
    trained_now, held_now = hold_out(refs(1000), 0.2, keep=50)
    assert {r.image for r in held_then} <= {r.image for r in held_now}
    assert {r.image for r in trained_then} <= {r.image for r in trained_now}


def test_copies_of_one_image_are_on_the_same_side() -> None:
    pool = refs(300)
    copies = [r.model_copy(update={"image": r.image.replace("image.png", "copy.png")}) for r in pool]
    trained, held_out = hold_out(pool + copies, 0.2, keep=50)
    held_digests = {r.image_digest for r in held_out}
    assert held_digests and not held_digests & {r.image_digest for r in trained}


def test_the_serving_model_is_the_latest_released_one_whatever_the_release_phase() -> None:
    older = ReleaseRecord(model=a_model("ft_v1.1"), released_at=T0)
    newer = ReleaseRecord(model=a_model("ft_v1.2"), released_at=T0 + timedelta(hours=1))
    statuses = [
        ModelReleaseStatus(phase="Released", current_model="ft_v1.1", history=[older]),
        # Blocked on an unapproved spec.model: the Deployment still serves ft_v1.2.
        ModelReleaseStatus(phase="Blocked", current_model="ft_v1.2", history=[newer, older]),
        ModelReleaseStatus(phase="Pending", current_model=None),
    ]
    assert serving_model(statuses) == newer.model
    assert serving_model(statuses[:1]) == older.model
    assert serving_model([]) is None


def test_a_rolled_back_release_serves_the_version_it_went_back_to() -> None:
    first = ReleaseRecord(model=a_model("ft_v1.1"), released_at=T0)
    second = ReleaseRecord(model=a_model("ft_v1.2"), released_at=T0 + timedelta(hours=1))
    status = ModelReleaseStatus(phase="RolledBack", current_model="ft_v1.1", history=[second, first])
    assert serving_model([status]) == first.model


@pytest.mark.parametrize(
    ("rate", "serving", "verdict"),
    [
        pytest.param(0.9, None, "Pass", id="above 0.8 with nothing serving passes"),
        pytest.param(
            0.9, VersusServing("ft_v1.1", 0.9, 0.95, "judged"), "Review", id="above 0.8 but below serving: Review"
        ),
        pytest.param(
            0.9, VersusServing("ft_v1.1", 0.9, 0.5, "judged"), "Pass", id="above 0.8 and above serving passes"
        ),
        pytest.param(
            0.7, VersusServing("ft_v1.1", 0.7, 0.5, "judged"), "Review", id="better than serving but under 0.8: Review"
        ),
    ],
)
def test_gate2_against_the_serving_model(rate: float, serving: VersusServing | None, verdict: str) -> None:
    decision = new_sample_gate(rate, NewSampleGate(), serving)
    assert decision.verdict == verdict
    if serving and serving.candidate < serving.serving:
        assert "serves now" in decision.reason


@pytest.mark.parametrize(
    ("candidate", "serving", "documents", "worse"),
    [
        pytest.param((0.95, 0.7), (0.6, 0.8), "held-out", True, id="the held-out documents decide when both have them"),
        pytest.param((0.95, None), (0.9, None), "judged", False, id="without held-out figures, the judged ones"),
        pytest.param((0.85, 0.9), (0.9, 0.6), "held-out", False, id="better on held-out, worse on all: not worse"),
    ],
)
def test_candidate_and_serving_model_are_compared_on_documents_neither_trained_on(
    candidate: tuple, serving: tuple, documents: str, worse: bool
) -> None:
    versus = versus_serving("ft_v1.1", candidate, serving)
    assert versus.documents == documents
    assert (versus.candidate < versus.serving) is worse


def test_a_heldout_judge_without_a_share_is_refused_naming_the_fields() -> None:
    with pytest.raises(ValidationError, match="judgeOn: heldOut needs holdoutShare > 0"):
        NewSampleGate(judge_on="heldOut", holdout_share=0)


@pytest.mark.parametrize(
    ("judge_on", "trained", "held_out", "words"),
    [
        pytest.param("all", 50, 0, "the 50 new documents trained on (none held out)", id="none held out"),
        pytest.param("all", 50, 10, "all 60 new documents (10 held out of training)", id="all"),
        pytest.param("heldOut", 50, 10, "the 10 held-out new documents", id="held out only"),
    ],
)
def test_gate2_says_which_documents_it_judged(judge_on: str, trained: int, held_out: int, words: str) -> None:
    assert judged_documents(NewSampleGate(judge_on=judge_on), trained, held_out) == words


# ---- the seed's rules on the plan ---------------------------------------------------------------


def anchor_refs(n: int) -> list[SampleRef]:
    return [
        SampleRef(image=f"anchor/train/{i}.png", image_digest=f"sha256:{i + 10**6:064x}", label_digest=DIGEST)
        for i in range(n)
    ]


def plan_for(new: int, anchor: int, merged: int = 0, kind: str = "FineTune", **pool: Any) -> RunPlan:
    samples = refs(new)
    return build_plan(
        run="p-run-1",
        uid="uid-1",
        spec=a_run_spec(kind=kind, snapshot={"sampleCount": new, "manifestDigest": DIGEST}),
        pool=a_pool_spec(**pool),
        new=samples,
        anchor=anchor_refs(anchor),
        number=1,
        test_manifest_digest=DIGEST,
        merged=samples[:merged],
    )


@pytest.mark.parametrize(
    ("anchor", "allow", "old", "shortfall", "refused"),
    [
        pytest.param(1000, False, 1000, 0, None, id="an anchor set as large as the table asks for is drawn from"),
        pytest.param(999, False, None, None, "AnchorTooSmall", id="one old sample short is refused by default"),
        pytest.param(300, True, 300, 700, None, id="a pool that allows a smaller anchor draws all and records the gap"),
        pytest.param(0, True, None, None, "NoOldSamples", id="an empty anchor set is refused even when allowed"),
        pytest.param(0, False, None, None, "NoOldSamples", id="an empty anchor set is always refused"),
    ],
)
def test_a_fine_tune_never_draws_fewer_old_samples_than_the_table_unless_the_pool_allows_it(
    anchor: int, allow: bool, old: int | None, shortfall: int | None, refused: str | None
) -> None:
    # 50 new samples (none held out at 50): the seed's table asks for 20x = 1000 old ones.
    if refused:
        with pytest.raises(PlanRefused) as caught:
            plan_for(50, anchor, mixing={"allowSmallerAnchor": allow})
        assert caught.value.reason == refused and "anchor" in str(caught.value)
    else:
        plan = plan_for(50, anchor, mixing={"allowSmallerAnchor": allow})
        assert (len(plan.old_samples), plan.anchor_shortfall) == (old, shortfall)


@pytest.mark.parametrize(
    ("snapshot", "merged", "new", "refused"),
    [
        pytest.param(2100, 2000, 100, False, id="a fine-tune of an adopted base plans only the samples since it"),
        pytest.param(2049, 2000, None, True, id="49 samples since the adopted base are too few to fine-tune"),
        pytest.param(100, 0, 100, False, id="with no merged samples the whole snapshot is new"),
    ],
)
def test_samples_merged_into_the_base_are_no_longer_new(
    snapshot: int, merged: int, new: int | None, refused: bool
) -> None:
    if refused:
        with pytest.raises(PlanRefused) as caught:
            plan_for(snapshot, 5000, merged=merged, gates={"newSamples": {"holdoutShare": 0}})
        assert caught.value.reason == "TooFewSamples"
        return
    plan = plan_for(snapshot, 5000, merged=merged, gates={"newSamples": {"holdoutShare": 0}})
    assert len(plan.new_samples) == new
    assert not {r.image for r in plan.new_samples} & {r.image for r in refs(snapshot)[:merged]}


def test_a_rebase_trains_on_every_sample_and_takes_its_attempts_version() -> None:
    plan = build_plan(
        run="p-run-3",
        uid="uid-3",
        spec=a_run_spec(kind="Rebase"),
        pool=a_pool_spec(),
        new=refs(60),
        anchor=anchor_refs(10),
        number=2,
        test_manifest_digest=DIGEST,
    )
    assert (len(plan.new_samples), len(plan.old_samples), plan.new_version) == (60, 10, "base_v3")
