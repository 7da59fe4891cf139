"""How many anchor samples join a fine-tune, and which ones (seed section 1)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from ballast.api.params import Mixing


@dataclass(frozen=True)
class MixPlan:
    new_samples: int
    old_samples: int
    rule: str


def old_sample_count(new_samples: int, mixing: Mixing) -> MixPlan:
    """Old samples to mix with `new_samples` pool samples.

    The table's rows are points (new, new x multiplier). Between two rows the count is linear;
    below the first row every new sample brings the first multiplier; above the last row, the
    last multiplier. The cap applies everywhere, so the count never falls as the pool grows.
    """
    if new_samples < 0:
        raise ValueError(f"new_samples must be >= 0, got {new_samples}")
    rows = mixing.table
    cap = mixing.old_sample_cap
    first, last = rows[0], rows[-1]
    exact = next((r for r in rows if r.new_samples == new_samples), None)
    if exact is not None:
        count, rule = new_samples * exact.multiplier, f"{exact.multiplier}x (table row {exact.new_samples})"
    elif new_samples < first.new_samples:
        count, rule = new_samples * first.multiplier, f"{first.multiplier}x (below {first.new_samples} new)"
    elif new_samples > last.new_samples:
        count, rule = new_samples * last.multiplier, f"{last.multiplier}x (above {last.new_samples} new)"
    else:
        low, high = next((a, b) for a, b in itertools.pairwise(rows) if a.new_samples <= new_samples < b.new_samples)
        low_old, high_old = low.new_samples * low.multiplier, high.new_samples * high.multiplier
        share = (new_samples - low.new_samples) / (high.new_samples - low.new_samples)
        count = round(low_old + share * (high_old - low_old))
        rule = f"linear between {low.new_samples}:{low.multiplier}x and {high.new_samples}:{high.multiplier}x"
    if count > cap:
        count, rule = cap, f"{rule}, capped at {cap}"
    return MixPlan(new_samples=new_samples, old_samples=count, rule=f"{new_samples} new -> {count} old: {rule}")


def draw_old_samples(anchor_ids: Sequence[str], count: int, seed: int) -> list[str]:
    """A reproducible random draw: the same ids, seed and count always give the same sample.

    Sorting first makes the draw independent of the order the store listed the ids in.
    """
    population = sorted(set(anchor_ids))
    if count > len(population):
        raise ValueError(f"the anchor set has {len(population)} samples, the mix needs {count}")
    return sorted(random.Random(seed).sample(population, count))
