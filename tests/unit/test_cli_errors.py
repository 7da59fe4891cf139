"""`ballast` failures: one line on stderr and an exit code that says what kind of failure it was."""

from __future__ import annotations

import json
from argparse import Namespace

import pytest
import urllib3
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException
from minio.error import S3Error

from ballast.adapters.kube import StoreCredentialsMissing
from ballast.adapters.objectstore import StoreRefused, StoreUnavailable
from ballast.cli import main as cli
from ballast.cli.errors import (
    FAILED,
    NOT_FOUND,
    REFUSED,
    UNREACHABLE,
    USAGE,
    NotFound,
    Refused,
    Unreachable,
    UsageError,
    describe,
    from_failure,
)
from ballast.cli.status import render, status_report


def api_error(status: int, message: str | None = None) -> ApiException:
    error = ApiException(status=status, reason="Reason")
    error.body = json.dumps({"kind": "Status", "message": message}) if message else None
    return error


def connection_refused() -> urllib3.exceptions.MaxRetryError:
    pool = urllib3.HTTPSConnectionPool("127.0.0.1", 1)
    reason = urllib3.exceptions.NewConnectionError(
        pool._new_conn(), "Failed to establish a new connection: [Errno 111] Connection refused"
    )
    return urllib3.exceptions.MaxRetryError(pool, "/apis/ballast.dev/v1alpha1/namespaces/ns/finetuneruns", reason)


def s3_error(code: str) -> S3Error:
    return S3Error(None, code, "the store says no", "/bucket/key", "req", "host")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        pytest.param(
            UsageError("--count must be at least 1, got 0"),
            USAGE,
            "error: --count must be at least 1, got 0",
            id="a bad flag value is a usage error (2)",
        ),
        pytest.param(
            NotFound("FineTuneRun r not found in namespace ns"),
            NOT_FOUND,
            "error: FineTuneRun r not found in namespace ns",
            id="a missing run is not found (3)",
        ),
        pytest.param(
            Refused("only a Failed run or a Reject verdict is retried"),
            REFUSED,
            "error: only a Failed run or a Reject verdict is retried",
            id="a seed rule's refusal is refused (4)",
        ),
        pytest.param(Unreachable("x"), UNREACHABLE, "error: x", id="an unreachable server is unreachable (5)"),
        pytest.param(
            ConfigException("Invalid kube-config file. No configuration found."),
            UNREACHABLE,
            "error: no usable kubeconfig (Invalid kube-config file. No configuration found.); set KUBECONFIG",
            id="a missing kubeconfig is unreachable (5) and says so",
        ),
        pytest.param(
            connection_refused(),
            UNREACHABLE,
            "error: cannot reach 127.0.0.1:1 (Connection refused)",
            id="a refused connection names the host and the reason, not urllib3's dump",
        ),
        pytest.param(
            urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"),
            UNREACHABLE,
            "error: cannot reach the server (ReadTimeoutError)",
            id="a timeout is unreachable",
        ),  # type: ignore[arg-type]
        pytest.param(
            api_error(404, 'finetuneruns.ballast.dev "r" not found'),
            NOT_FOUND,
            'error: finetuneruns.ballast.dev "r" not found',
            id="the apiserver's 404 is not found",
        ),
        pytest.param(
            api_error(403, 'User "bob" cannot get resource "finetuneruns"'),
            REFUSED,
            'error: User "bob" cannot get resource "finetuneruns"',
            id="RBAC's 403 is refused, in the apiserver's own words",
        ),
        pytest.param(
            api_error(422, "spec.approval: needs the `approve` verb"),
            REFUSED,
            "error: spec.approval: needs the `approve` verb",
            id="an admission policy's 422 is refused",
        ),
        pytest.param(
            api_error(409, "the object has been modified"),
            REFUSED,
            "error: the object has been modified",
            id="a conflict is refused",
        ),
        pytest.param(
            api_error(503),
            UNREACHABLE,
            "error: the apiserver is unavailable: 503 Reason",
            id="a 503 without a body is unavailable",
        ),
        pytest.param(
            api_error(500, "etcd\nexploded"),
            FAILED,
            "error: the apiserver answered 500: etcd exploded",
            id="any other apiserver answer is 1, on one line",
        ),
        pytest.param(
            StoreUnavailable("object store minio:9000 unreachable (MaxRetryError)"),
            UNREACHABLE,
            "error: object store minio:9000 unreachable (MaxRetryError)",
            id="an unreachable object store is unreachable",
        ),
        pytest.param(
            StoreRefused("minio:9000", "AccessDenied"),
            REFUSED,
            "error: object store minio:9000 refused the request: AccessDenied",
            id="an object store that says no is refused",
        ),
        pytest.param(
            StoreRefused("minio:9000", "NoSuchKey"),
            NOT_FOUND,
            "error: object store minio:9000 refused the request: NoSuchKey",
            id="a missing object is not found",
        ),
        pytest.param(
            s3_error("NoSuchBucket"),
            NOT_FOUND,
            "error: object store: NoSuchBucket",
            id="a raw S3 missing bucket is not found",
        ),
        pytest.param(
            s3_error("AccessDenied"), REFUSED, "error: object store: AccessDenied", id="a raw S3 refusal is refused"
        ),
        pytest.param(
            StoreCredentialsMissing("spec.objectStore.credentialsSecretRef: Secret s not found"),
            FAILED,
            "error: spec.objectStore.credentialsSecretRef: Secret s not found",
            id="missing store credentials name the field",
        ),
        pytest.param(
            PermissionError(13, "Permission denied", "/data/out"),
            FAILED,
            "error: /data/out: Permission denied",
            id="a file the person named that cannot be written is 1, naming the file",
        ),
    ],
)
def test_each_kind_of_failure_gets_its_exit_code_and_one_line(error: BaseException, code: int, line: str) -> None:
    assert describe(error) == (code, line)
    assert "\n" not in line


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(KeyError("status"), id="a KeyError is a bug"),
        pytest.param(TypeError("unsupported operand"), id="a TypeError is a bug"),
        pytest.param(ValueError("bad"), id="a ValueError is a bug"),
        pytest.param(OSError("no file named"), id="an OSError without a file name is a bug"),
    ],
)
def test_a_bug_is_not_described_so_it_keeps_its_traceback(error: BaseException) -> None:
    assert describe(error) is None


@pytest.mark.parametrize(
    ("error", "kind", "line"),
    [
        pytest.param(
            api_error(422, "needs the `approve` verb"),
            Refused,
            "the apiserver did not accept the approval: needs the `approve` verb",
            id="an admission refusal while approving stays refused and says what was being done",
        ),
        pytest.param(
            connection_refused(),
            Unreachable,
            "the apiserver did not accept the approval: cannot reach 127.0.0.1:1 (Connection refused)",
            id="an unreachable apiserver while approving stays unreachable",
        ),
    ],
)
def test_a_failure_while_doing_something_keeps_its_kind(error: BaseException, kind: type, line: str) -> None:
    wrapped = from_failure(error, "the apiserver did not accept the approval")
    assert type(wrapped) is kind and wrapped.message == line


def test_from_failure_re_raises_a_bug() -> None:
    with pytest.raises(KeyError):
        from_failure(KeyError("x"), "doing")


def raising(error: BaseException):  # type: ignore[no-untyped-def]
    def handler(_args: Namespace) -> int:
        raise error

    return handler


@pytest.mark.parametrize(
    ("error", "debug", "code"),
    [
        pytest.param(
            NotFound("FineTuneRun r not found"),
            False,
            NOT_FOUND,
            id="main prints a typed error as one line and returns its code",
        ),
        pytest.param(connection_refused(), False, UNREACHABLE, id="main sorts a client-library failure"),
    ],
)
def test_main_turns_failures_into_one_line_and_a_code(
    error: BaseException, debug: bool, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(cli, "parser", lambda: _parser_with(raising(error)))
    assert cli.main(["status"]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("error", "argv"),
    [
        pytest.param(KeyError("status"), ["status"], id="a bug keeps its traceback"),
        pytest.param(NotFound("x"), ["--debug", "status"], id="--debug keeps the traceback of any failure"),
    ],
)
def test_main_lets_bugs_and_debug_raise(error: BaseException, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "parser", lambda: _parser_with(raising(error)))
    with pytest.raises(type(error)):
        cli.main(argv)


def _parser_with(handler):  # type: ignore[no-untyped-def]
    root = cli.argparse.ArgumentParser(prog="ballast")
    root.add_argument("--debug", action="store_true")
    root.add_subparsers(dest="command", required=True).add_parser("status").set_defaults(handler=handler)
    return root


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["status", "-o", "xml"], id="an unknown output format is a usage error"),
        pytest.param(["runs", "approve", "r"], id="a missing required flag is a usage error"),
        pytest.param(["no-such-command"], id="an unknown command is a usage error"),
    ],
)
def test_bad_flags_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(argv)
    assert raised.value.code == USAGE


def test_the_help_lists_the_exit_codes() -> None:
    text = cli.parser().format_help()
    assert all(f"  {code}" in text for code in ("2  usage", "3  not found", "4  refused", "5  unreachable"))


LISTED = {
    "finetunepools": [{"metadata": {"name": "invoices"}, "status": {"verifiedSamples": 60, "activeRun": None}}],
    "finetuneruns": [
        {"metadata": {"name": "invoices-run-1"}, "status": {"phase": "Succeeded", "model": {"version": "ft_v1.1"}}}
    ],
    "modelreleases": [{"metadata": {"name": "detector"}}],
}


@pytest.mark.parametrize(
    ("output", "load"),
    [
        pytest.param("json", json.loads, id="status -o json is JSON"),
        pytest.param("yaml", yaml.safe_load, id="status -o yaml is YAML"),
    ],
)
def test_status_output_is_structured_data_naming_each_object(output: str, load) -> None:  # type: ignore[no-untyped-def]
    data = load(render(status_report("ns", LISTED), output))
    assert data["namespace"] == "ns"
    assert data["finetunepools"] == [
        {"name": "invoices", "verifiedSamples": 60, "samplesSinceLastRun": None, "currentBase": None, "activeRun": None}
    ]
    assert data["finetuneruns"][0]["model"] == {"version": "ft_v1.1"}
    assert data["modelreleases"][0] == {"name": "detector", "phase": None, "currentModel": None, "message": None}


def test_status_table_is_the_default_and_unchanged() -> None:
    table = render(status_report("ns", LISTED), "table")
    assert table.splitlines() == [
        "finetunepools:",
        "  invoices: verifiedSamples=60 samplesSinceLastRun=- currentBase=- activeRun=-",
        "finetuneruns:",
        '  invoices-run-1: phase="Succeeded" verdict=- model="ft_v1.1" message=-',
        "modelreleases:",
        "  detector: phase=- currentModel=- message=-",
    ]
