"""The `ballast` command's exit codes, and the errors its commands raise to choose one.

    0  done
    1  anything else (a sample or document refused for its content, a partly refused import)
    2  usage: a bad flag or flag value
    3  not found: the pool, run, release or object named does not exist
    4  refused: the apiserver said no (RBAC, an admission policy) or a seed rule did
    5  unreachable: no kubeconfig, the apiserver or the object store did not answer

A command raises one of these; `ballast.cli.main` prints `error: <message>` (one line) on stderr
and exits with its code. Nothing here imports a client library.
"""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
NOT_FOUND = 3
REFUSED = 4
UNREACHABLE = 5

EPILOG = """exit codes:
  0  done
  1  anything else (e.g. a sample refused for its content)
  2  usage: a bad flag or flag value
  3  not found: the pool, run, release or object named does not exist
  4  refused: RBAC, an admission policy or a seed rule said no
  5  unreachable: no kubeconfig, or the apiserver or object store did not answer
Failures are one line on stderr (`error: ...`); --debug shows the traceback."""


class CliError(Exception):
    """A failure the person can act on: one line, one exit code."""

    code = FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(CliError):
    code = USAGE


class NotFound(CliError):
    code = NOT_FOUND


class Refused(CliError):
    code = REFUSED


class Unreachable(CliError):
    code = UNREACHABLE


BY_KIND: dict[str, type[CliError]] = {
    "not found": NotFound,
    "refused": Refused,
    "unreachable": Unreachable,
    "error": CliError,
}


def one_line(message: str) -> str:
    """`error: ...` on one line, whatever the message held."""
    text = " ".join(message.split())
    return text if text.startswith("error: ") else f"error: {text}"


def describe(error: BaseException) -> tuple[int, str] | None:
    """(exit code, the line to print) for a failure a person can act on; None for a bug, which
    keeps its traceback. Client-library failures are sorted by ballast.adapters.failures."""
    if isinstance(error, CliError):
        return error.code, one_line(error.message)
    from ballast.adapters.failures import classify

    sorted_as = classify(error)
    if sorted_as is not None:
        kind, message = sorted_as
        return BY_KIND[kind].code, one_line(message)
    if isinstance(error, OSError) and error.filename is not None:  # a path the person named
        return FAILED, one_line(f"{error.filename}: {error.strerror or error}")
    return None


def from_failure(error: BaseException, doing: str) -> CliError:
    """A client-library failure while `doing` something, as the CliError of its kind (a bug
    stays itself: re-raise it)."""
    from ballast.adapters.failures import classify

    sorted_as = classify(error)
    if sorted_as is None:
        raise error
    kind, message = sorted_as
    return BY_KIND[kind](f"{doing}: {message}")
