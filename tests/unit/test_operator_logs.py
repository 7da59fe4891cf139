"""`ballast operator --log-level/--log-format`: the chart's logLevel is applied, never ignored, and
json gives one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from ballast.cli import logs
from ballast.cli.main import parser


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def captured(level: str, fmt: str, emit) -> str:
    logs.configure(level, fmt)
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
    emit(logging.getLogger("ballast.reconcile"))
    return stream.getvalue()


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("debug", ["debug", "info", "warning", "error"]),
        ("info", ["info", "warning", "error"]),
        ("warning", ["warning", "error"]),
        ("error", ["error"]),
    ],
    ids=["debug shows everything", "info hides debug", "warning hides info", "error shows errors only"],
)
def test_the_log_level_decides_which_records_are_written(root_logging, level: str, shown: list[str]) -> None:
    def emit(log: logging.Logger) -> None:
        for name in ("debug", "info", "warning", "error"):
            getattr(log, name)("a %s record", name)

    lines = captured(level, "json", emit).splitlines()
    assert [json.loads(line)["level"] for line in lines] == shown


def test_json_writes_one_object_per_line_with_its_fields_and_the_object_kopf_names(root_logging) -> None:
    def emit(log: logging.Logger) -> None:
        reference = {"apiVersion": "ballast.dev/v1alpha1", "kind": "FineTunePool", "namespace": "ml", "name": "x"}
        log.info("Created Job %s", "x-run-1", extra={"k8s_ref": reference})
        try:
            raise RuntimeError("store down\nsecond line")
        except RuntimeError:
            log.exception("reconcile failed")

    lines = captured("info", "json", emit).splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "Created Job x-run-1" and first["logger"] == "ballast.reconcile"
    assert first["level"] == "info" and first["time"].endswith("+00:00")
    assert first["object"] == {"kind": "FineTunePool", "namespace": "ml", "name": "x"}
    assert second["level"] == "error" and "RuntimeError: store down\nsecond line" in second["exception"]


def test_text_writes_the_level_logger_and_message(root_logging) -> None:
    text = captured("info", "text", lambda log: log.warning("slow store"))
    assert text.rstrip().endswith("WARNING ballast.reconcile slow store")


@pytest.mark.parametrize(
    ("argv", "level", "fmt"),
    [
        (["operator"], "info", "text"),
        (["operator", "--log-level=warning", "--log-format=json"], "warning", "json"),
        (["operator", "--log-level", "error"], "error", "text"),
    ],
    ids=["defaults: info, text", "warning and json as the chart passes them", "error"],
)
def test_the_operator_command_takes_a_log_level_and_format(argv: list[str], level: str, fmt: str) -> None:
    args = parser().parse_args(argv)
    assert (args.log_level, args.log_format) == (level, fmt)


@pytest.mark.parametrize(
    ("level", "fmt", "message"),
    [("loud", "text", "--log-level 'loud'"), ("info", "xml", "--log-format 'xml'")],
    ids=["an unknown level is refused naming the flag", "an unknown format is refused naming the flag"],
)
def test_bad_logging_settings_are_refused_naming_the_flag(root_logging, level: str, fmt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        logs.configure(level, fmt)
