"""Counting the pool index with concurrent writers: a key stamped earlier may appear later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ballast.adapters.pool import index_key
from ballast.api.layout import parse_index_key
from ballast.policy.finetunepool import SETTLE_SECONDS, count_index

from .builders import a_sample_record

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def key_at(seconds: float, sample_id: str) -> str:
    return index_key("p", a_sample_record(sample_id), T0 + timedelta(seconds=seconds))


def test_the_stamp_is_the_write_time_and_keys_sort_by_it():
    early, late = key_at(1.5, "zzz"), key_at(2.0, "aaa")
    assert parse_index_key(early).written_at == T0 + timedelta(seconds=1.5)
    assert sorted([late, early]) == [early, late]


def test_the_cursor_passes_only_settled_keys_and_young_ones_are_counted_every_time():
    old, young = key_at(0, "a"), key_at(SETTLE_SECONDS, "b")
    counted = count_index([old, young], None, 0, T0 + timedelta(seconds=SETTLE_SECONDS + 10))
    assert (counted.total, counted.cursor, counted.settled) == (2, old, 1)
    again = count_index([young], counted.cursor, counted.settled, T0 + timedelta(seconds=SETTLE_SECONDS + 12))
    assert (again.total, again.cursor, again.settled) == (2, old, 1)  # counted again, not twice


def test_a_key_that_appears_late_but_within_the_settle_window_is_still_counted():
    # b is stamped first but its PUT lands after c was listed.
    b, c = key_at(10, "b"), key_at(11, "c")
    first = count_index([c], None, 0, T0 + timedelta(seconds=12))
    assert first.total == 1
    second = count_index(sorted([b, c]), first.cursor, first.settled, T0 + timedelta(seconds=13))
    assert second.total == 2


writes = st.lists(
    st.tuples(st.floats(0, 1000), st.floats(0, SETTLE_SECONDS * 0.999)),  # (stamp, delay before visible)
    max_size=60,
)


@given(writes, st.lists(st.floats(0, 2000), max_size=40))
def test_with_any_interleaving_of_writers_and_reconciles_every_visible_key_is_counted_once(writes, reconciles):
    keys = [(key_at(stamp, f"s{i}"), stamp + delay) for i, (stamp, delay) in enumerate(writes)]
    cursor, settled = None, 0
    for at in [*sorted(reconciles), 1000 + 2 * SETTLE_SECONDS]:
        visible = sorted(k for k, shows in keys if shows <= at)
        listed = [k for k in visible if cursor is None or k > cursor]
        counted = count_index(listed, cursor, settled, T0 + timedelta(seconds=at))
        assert counted.total == len(visible)
        cursor, settled = counted.cursor, counted.settled
    assert settled == len(keys)  # in the end everything has settled
