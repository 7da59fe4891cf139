"""Conditions the Kubernetes way (lastTransitionTime moves only when the status changes), and the
Events decisions ask for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ballast.api.common import Condition, ConditionStatus
from ballast.api.conditions import Reason


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus | bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> list[Condition]:
    """Return `conditions` with `type_` set; other conditions are kept in order."""
    if isinstance(status, bool):
        status = "True" if status else "False"
    previous = next((c for c in conditions if c.type == type_), None)
    since = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == type_ else c for c in conditions]


def condition_is_true(conditions: Sequence[Condition], type_: str) -> bool:
    return any(c.type == type_ and c.status == "True" for c in conditions)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event a decision asks for, kubectl-describe style ("Created Job x")."""

    reason: Reason
    message: str
    warning: bool = False
