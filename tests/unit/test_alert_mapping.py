"""Which FineTunePool an alert is about, exactly: by its `namespace` and `pool` labels, never by a
guess; each alert judged alone, so one bad alert does not hold back the rest of its notification."""

from __future__ import annotations

import pytest

from ballast.api.alerts import AlertmanagerPayload
from ballast.policy.alerts import Caller, WebhookTokens, authenticate, pool_alerts

WATCHED = frozenset({"ml", "vision"})
ANYONE = Caller(None)


def a_payload(*labels: dict[str, str], status: str = "firing") -> AlertmanagerPayload:
    alerts = [
        {"status": status, "labels": {"alertname": "BallastLatencyHigh", **x}, "startsAt": "2026-11-26T12:00:00Z"}
        for x in labels
    ]
    return AlertmanagerPayload.model_validate({"version": "4", "status": status, "receiver": "r", "alerts": alerts})


@pytest.mark.parametrize(
    ("case", "labels", "watched", "caller", "refused"),
    [
        ("an alert for a watched namespace is applied", {"namespace": "ml", "pool": "invoices"}, WATCHED, ANYONE, None),
        (
            "an alert without namespace is refused, not looked up in the operator's namespace",
            {"pool": "invoices"},
            WATCHED,
            ANYONE,
            "no labels.namespace",
        ),
        (
            "an alert for a namespace the operator does not watch is refused",
            {"namespace": "ops", "pool": "invoices"},
            WATCHED,
            ANYONE,
            "namespace ops is not watched",
        ),
        (
            "an operator watching every namespace takes any namespace",
            {"namespace": "ops", "pool": "invoices"},
            None,
            ANYONE,
            None,
        ),
        ("an alert without pool is refused", {"namespace": "ml"}, WATCHED, ANYONE, "labels.pool"),
        (
            "a pool that is not a Kubernetes name is refused",
            {"namespace": "ml", "pool": "../x"},
            WATCHED,
            ANYONE,
            "labels.pool '../x'",
        ),
        (
            "a namespace that is not a Kubernetes name is refused",
            {"namespace": "ML/x", "pool": "invoices"},
            None,
            ANYONE,
            "labels.namespace 'ML/x'",
        ),
        (
            "a namespace's own token may send alerts for that namespace",
            {"namespace": "ml", "pool": "invoices"},
            WATCHED,
            Caller(frozenset({"ml"})),
            None,
        ),
        (
            "a namespace's own token may not send alerts for another watched namespace",
            {"namespace": "vision", "pool": "invoices"},
            WATCHED,
            Caller(frozenset({"ml"})),
            "this token may not send alerts for namespace vision",
        ),
    ],
)
def test_an_alert_maps_to_its_pool_exactly_or_is_refused_with_the_reason(case, labels, watched, caller, refused):
    triage = pool_alerts(a_payload(labels), watched, caller)
    if refused is None:
        assert [(a.namespace, a.pool) for a in triage.matched] == [(labels["namespace"], labels["pool"])], case
        assert triage.refused == [], case
    else:
        assert triage.matched == [], case
        assert len(triage.refused) == 1 and refused in triage.refused[0].why, (case, triage.refused)
        assert triage.refused[0].alertname == "BallastLatencyHigh", case


def test_one_refused_alert_does_not_hold_back_the_others_in_its_notification():
    triage = pool_alerts(
        a_payload(
            {"namespace": "ml", "pool": "invoices"},
            {"namespace": "ops", "pool": "invoices"},
            {"pool": "receipts"},
            {"namespace": "vision", "pool": "receipts"},
        ),
        WATCHED,
        ANYONE,
    )
    assert [(a.namespace, a.pool) for a in triage.matched] == [("ml", "invoices"), ("vision", "receipts")]
    assert len(triage.refused) == 2 and triage.skipped == []


def test_a_resolved_alert_is_skipped_not_refused():
    triage = pool_alerts(a_payload({"namespace": "ml", "pool": "invoices"}, status="resolved"), WATCHED, ANYONE)
    assert triage.matched == [] and triage.refused == [] and triage.skipped == ["BallastLatencyHigh: resolved"]


TOKENS = WebhookTokens("shared-secret", {"ml": "ml-secret", "vision": "vision-secret"})


@pytest.mark.parametrize(
    ("case", "header", "tokens", "caller"),
    [
        ("the shared token speaks for every watched namespace", "Bearer shared-secret", TOKENS, Caller(None)),
        ("a namespace's token speaks for that namespace only", "Bearer ml-secret", TOKENS, Caller(frozenset({"ml"}))),
        ("a wrong token is nobody", "Bearer nope", TOKENS, None),
        ("no header is nobody", "", TOKENS, None),
        ("a token without `Bearer` is nobody", "ml-secret", TOKENS, None),
        (
            "per-namespace tokens work without a shared one",
            "Bearer ml-secret",
            WebhookTokens(None, {"ml": "ml-secret"}),
            Caller(frozenset({"ml"})),
        ),
        ("an empty per-namespace token never matches", "Bearer ", WebhookTokens(None, {"ml": ""}), None),
    ],
)
def test_a_bearer_token_proves_which_namespaces_its_caller_may_alert(case, header, tokens, caller):
    assert authenticate(header, tokens) == caller, case
