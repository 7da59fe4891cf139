"""Which status fields an incoming alert sets: a repeat of an alert already acted on starts nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ballast.policy.alerts import PoolAlert, alert_status_patch

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def an_alert(starts_at: str) -> PoolAlert:
    return PoolAlert("ml", "invoices", "BallastClassDetectionRateLow", None, datetime.fromisoformat(starts_at))


@pytest.mark.parametrize(
    ("case", "status", "starts_at", "pending"),
    [
        ("a first alert becomes pending", {}, "2026-11-26T11:50:00+00:00", True),
        (
            "an alert re-sent after the run it started is not pending again",
            {"lastAlertActionTime": "2026-11-26T11:55:00Z"},
            "2026-11-26T11:50:00+00:00",
            False,
        ),
        (
            "an alert that started after the last action is pending",
            {"lastAlertActionTime": "2026-11-26T11:55:00Z"},
            "2026-11-26T11:56:00+00:00",
            True,
        ),
        (
            "a repeat while one is pending keeps the first clock",
            {"pendingAlert": "BallastLatencyHigh", "pendingAlertTime": "2026-11-26T11:00:00Z"},
            "2026-11-26T11:50:00+00:00",
            False,
        ),
    ],
)
def test_an_alert_is_pending_only_when_nothing_acted_on_it_yet(case, status, starts_at, pending):
    patch = alert_status_patch(status, an_alert(starts_at), NOW)
    assert patch["lastAlert"] == "BallastClassDetectionRateLow" and patch["lastAlertTime"] == "2026-11-26T12:00:00Z"
    assert ("pendingAlert" in patch) is pending, case
