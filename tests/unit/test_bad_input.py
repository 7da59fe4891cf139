"""Bad input is refused with the field at fault: labels, manifests, keys, sample ids, alert payloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ballast.adapters.objectstore import UnsafeKey, safe_key
from ballast.api.alerts import AlertmanagerPayload
from ballast.api.samples import SampleError, parse_labels, parse_manifest
from ballast.policy.alerts import Caller, pool_alerts

from .builders import DIGEST, a_sample_record


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0.5 0.5 0.1", "expected 5 fields"),
        ("x 0.5 0.5 0.1 0.1", "class 'x' is not an integer"),
        ("8 0.5 0.5 0.1 0.1", "class 8 is out of range 0..7"),
        ("-1 0.5 0.5 0.1 0.1", "class -1 is out of range"),
        ("0 1.5 0.5 0.1 0.1", "x 1.5 is outside [0, 1]"),
        ("0 0.5 nan 0.1 0.1", "y nan is outside [0, 1]"),
        ("0 0.5 0.5 0 0.1", "zero width or height"),
        ("0 0.98 0.5 0.1 0.1", "extends outside the image"),
        ("0 0.5 0.5 abc 0.1", "w 'abc' is not a number"),
    ],
)
def test_a_bad_label_line_is_refused_naming_the_line_and_field(text: str, message: str) -> None:
    with pytest.raises(SampleError, match="label.txt line 2") as caught:
        parse_labels("0 0.5 0.5 0.1 0.1\n" + text, 8)
    assert message in str(caught.value)


coordinate = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(st.lists(st.tuples(st.integers(0, 7), coordinate, coordinate, coordinate, coordinate), max_size=20))
def test_the_label_parser_accepts_exactly_the_boxes_inside_the_image(rows) -> None:
    text = "".join(f"{c} {x} {y} {w} {h}\n" for c, x, y, w, h in rows)
    inside = all(
        w > 0
        and h > 0
        and x - w / 2 >= -1e-6
        and x + w / 2 <= 1 + 1e-6
        and y - h / 2 >= -1e-6
        and y + h / 2 <= 1 + 1e-6
        for _, x, y, w, h in rows
    )
    if inside:
        assert len(parse_labels(text, 8)) == len(rows)
    else:
        with pytest.raises(SampleError):
            parse_labels(text, 8)


@given(st.text(max_size=200))
def test_the_label_parser_never_crashes_on_arbitrary_text(text: str) -> None:
    try:
        boxes = parse_labels(text, 8)
    except SampleError:
        return
    assert all(0 <= b.cls < 8 for b in boxes)


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs/key", "a/../../b", "a//b", "a\\b", "pool/../x"])
def test_object_keys_that_escape_the_prefix_are_refused(key: str) -> None:
    with pytest.raises(UnsafeKey):
        safe_key(key)


@given(st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=40))
def test_a_safe_key_never_contains_a_parent_step(key: str) -> None:
    try:
        safe_key(key)
    except UnsafeKey:
        return
    assert ".." not in key.split("/") and not key.startswith("/")


def test_a_manifest_line_escaping_the_prefix_is_refused() -> None:
    with pytest.raises(SampleError, match="line 1: image key '../x.png' escapes"):
        parse_manifest(f"../x.png {DIGEST} {DIGEST}\n")
    with pytest.raises(SampleError, match="line 1"):
        parse_manifest("just-a-key\n")


@pytest.mark.parametrize("sample_id", ["../evil", "a/b", "", ".hidden", "x" * 200])
def test_sample_ids_that_are_not_plain_names_are_refused(sample_id: str) -> None:
    with pytest.raises(ValidationError, match="id"):
        a_sample_record(sample_id)


GOOD_ALERT = {
    "status": "firing",
    "labels": {"alertname": "BallastLatencyHigh", "pool": "invoices", "namespace": "ml"},
    "startsAt": "2026-11-26T12:00:00Z",
}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"version": "3", "status": "firing", "receiver": "r", "alerts": [GOOD_ALERT]}, "version"),
        ({"version": "4", "status": "firing", "receiver": "r", "alerts": []}, "alerts"),
        (
            {"version": "4", "status": "firing", "receiver": "r", "alerts": [{**GOOD_ALERT, "status": "odd"}]},
            "alerts.0.status",
        ),
        ({"version": "4", "status": "firing", "alerts": [GOOD_ALERT]}, "receiver"),
    ],
)
def test_a_malformed_alert_payload_is_refused_naming_the_field(payload: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AlertmanagerPayload.model_validate(payload)
    assert field in {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}


def test_alerts_map_to_pools_by_label_and_skip_what_they_cannot() -> None:
    payload = AlertmanagerPayload.model_validate(
        {
            "version": "4",
            "status": "firing",
            "receiver": "r",
            "alerts": [
                GOOD_ALERT,
                {**GOOD_ALERT, "labels": {"alertname": "NoPool"}},
                {**GOOD_ALERT, "labels": {"alertname": "Bad", "pool": "../x"}},
                {**GOOD_ALERT, "status": "resolved"},
            ],
        }
    )
    triage = pool_alerts(payload, frozenset({"ml"}), Caller(None))
    assert [(a.namespace, a.pool, a.alertname) for a in triage.matched] == [("ml", "invoices", "BallastLatencyHigh")]
    assert len(triage.refused) == 2 and len(triage.skipped) == 1


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x89PNG\r\n\x1a\n truncated", id="a truncated PNG"),
        pytest.param(b"plain text, not an image", id="bytes no image format knows"),
    ],
)
def test_an_undecodable_image_is_refused_even_in_a_process_that_imported_ultralytics(data: bytes) -> None:
    # Ultralytics patches PIL.Image.open on import to pip-install a HEIF plugin for files Pillow
    # cannot identify (`ballast serve` imports it): the intake must still refuse, not try to install.
    import ultralytics.utils.patches  # noqa: F401

    from ballast.adapters.pool import check_image

    with pytest.raises(SampleError, match="not a decodable image"):
        check_image(data, "feedback image")
