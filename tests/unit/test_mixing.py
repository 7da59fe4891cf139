from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ballast.api.params import Mixing
from ballast.policy.mixing import draw_old_samples, old_sample_count

SEED_TABLE = Mixing()


@pytest.mark.parametrize(
    ("new", "old", "total"),
    [
        # Seed section 1, row by row: accumulated new samples -> old data (total training size).
        pytest.param(10, 500, 510, id="10 new samples draw 50x: 500 old, 510 in all"),
        pytest.param(50, 1000, 1050, id="50 new samples draw 20x: 1000 old, 1050 in all"),
        pytest.param(200, 2000, 2200, id="200 new samples draw 10x: 2000 old, 2200 in all"),
        pytest.param(500, 2500, 3000, id="500 new samples draw 5x: 2500 old, 3000 in all"),
    ],
)
def test_the_seeds_mixing_table_rows(new: int, old: int, total: int) -> None:
    plan = old_sample_count(new, SEED_TABLE)
    assert plan.old_samples == old
    assert plan.new_samples + plan.old_samples == total


@pytest.mark.parametrize(
    ("new", "old"),
    [
        pytest.param(5, 250, id="below the first row every new sample brings 50 old"),
        pytest.param(30, 750, id="halfway between 10 and 50 the count is halfway between 500 and 1000"),
        pytest.param(125, 1500, id="halfway between 50 and 200 is halfway between 1000 and 2000"),
        pytest.param(350, 2250, id="halfway between 200 and 500 is halfway between 2000 and 2500"),
        pytest.param(599, 2995, id="above 500 it is 5x"),
        pytest.param(600, 3000, id="600 new reach the cap exactly"),
        pytest.param(1000, 3000, id="1000 new stay at the 3000 cap"),
        pytest.param(0, 0, id="an empty pool draws nothing"),
    ],
)
def test_between_and_beyond_the_rows(new: int, old: int) -> None:
    assert old_sample_count(new, SEED_TABLE).old_samples == old


def test_the_rule_applied_is_spelled_out() -> None:
    assert "20x (table row 50)" in old_sample_count(50, SEED_TABLE).rule
    assert "capped at 3000" in old_sample_count(1000, SEED_TABLE).rule


def test_a_pool_may_configure_its_own_table_and_cap() -> None:
    mixing = Mixing.model_validate({"table": [{"newSamples": 50, "multiplier": 4}], "oldSampleCap": 100})
    assert old_sample_count(20, mixing).old_samples == 80
    assert old_sample_count(50, mixing).old_samples == 100
    assert old_sample_count(80, mixing).old_samples == 100


@given(st.integers(min_value=0, max_value=20_000))
def test_the_old_count_never_decreases_as_the_pool_grows(new: int) -> None:
    assert old_sample_count(new + 1, SEED_TABLE).old_samples >= old_sample_count(new, SEED_TABLE).old_samples


@given(st.integers(min_value=0, max_value=20_000))
def test_the_old_count_never_exceeds_the_cap(new: int) -> None:
    assert old_sample_count(new, SEED_TABLE).old_samples <= 3000


def test_a_table_whose_old_counts_fall_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="mixing.table"):
        Mixing.model_validate({"table": [{"newSamples": 10, "multiplier": 50}, {"newSamples": 20, "multiplier": 5}]})


def test_a_zero_multiplier_is_refused() -> None:
    with pytest.raises(ValidationError, match="multiplier"):
        Mixing.model_validate({"table": [{"newSamples": 10, "multiplier": 0}]})


ANCHOR = [f"anchor/{i:05d}" for i in range(5000)]


def test_the_same_seed_draws_the_same_old_samples() -> None:
    assert draw_old_samples(ANCHOR, 1000, seed=7) == draw_old_samples(list(reversed(ANCHOR)), 1000, seed=7)


def test_a_new_seed_draws_a_different_sample() -> None:
    assert draw_old_samples(ANCHOR, 1000, seed=7) != draw_old_samples(ANCHOR, 1000, seed=8)


def test_a_draw_has_no_duplicates_and_the_asked_size() -> None:
    drawn = draw_old_samples(ANCHOR, 3000, seed=1)
    assert len(drawn) == len(set(drawn)) == 3000


def test_drawing_more_than_the_anchor_holds_is_an_error() -> None:
    with pytest.raises(ValueError, match="anchor set has 5000"):
        draw_old_samples(ANCHOR, 5001, seed=1)
