"""A container as a local process: start it, signal it, notice its exit, run its probes.

Each container runs in a session of its own (its process group is what gets signalled); its
output goes to a log file, its PID to a file a later agent uses to kill what a crash left behind.
Its termination message file is made empty before each start and read when it exits (where the
file lives and what is reported is `termination`'s to decide).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shlex
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import probes, termination
from .lifecycle import exit_code
from .probes import ExecAction, HttpGet, Probe, ProbeState, TcpSocket
from .spec import Container
from .status import ContainerState, iso
from .termination import Unreadable


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class ContainerRun:
    """One container of a pod and its current process (None until it first starts)."""

    spec: Container
    pid_file: Path  # read by the next agent if this one dies without stopping the container
    log_path: Path
    init: bool = False
    process: subprocess.Popen[bytes] | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    exit_code: int | None = None
    restarts: int = 0
    probe_state: ProbeState = field(default_factory=ProbeState)
    restart_at: float | None = None  # monotonic time of the next start, while backing off
    last_exit: dict[str, Any] | None = None
    waiting_reason: str | None = "ContainerCreating"
    waiting_message: str | None = None
    message_file: Path | None = None  # the host file holding this start's termination message
    log_offset: int = 0  # where this start's output begins in the log
    message: str | None = None  # the termination message of the latest exit

    @property
    def name(self) -> str:
        return self.spec.name

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def snapshot(self) -> ContainerState:
        return ContainerState(
            name=self.name,
            image=self.spec.image,
            pid=self.process.pid if self.process is not None else None,
            running=self.running(),
            exit_code=self.exit_code,
            started_at=self.started_at,
            finished_at=self.finished_at,
            restarts=self.restarts,
            ready=self.probe_state.ready,
            restart_pending=self.restart_at is not None,
            waiting_reason=self.waiting_reason,
            waiting_message=self.waiting_message,
            last_exit=self.last_exit,
            message=self.message,
        )

    def launch(
        self, argv: list[str], shown: list[str], env: dict[str, str], cwd: str, message_file: Path | None = None
    ) -> None:
        """Start `argv` (`shown` in the log: the command without its mount wrapper) and record the
        start: the PID for a later agent, where its output and its termination message go, fresh
        probes, no exit, no back-off."""
        Path(cwd).mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            out.write(f"--- {iso(now())} starting {shlex.join(shown)}\n".encode())
            out.flush()
            self.log_offset = out.tell()
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.process = process
        self.pid_file.write_text(str(process.pid))
        self.started_at = now()
        self.finished_at = None
        self.exit_code = None
        self.message_file, self.message = message_file, None
        self.probe_state = probes.started(self.spec.readiness, self.spec.liveness, time.monotonic())
        self.waiting_reason = self.waiting_message = None
        self.restart_at = None

    def signal(self, sig: int) -> None:
        """Signal the container's process group, if it still runs."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def collect(self) -> bool:
        """Record an exit; True when the container just stopped."""
        if self.process is None or self.exit_code is not None:
            return False
        code = self.process.poll()
        if code is None:
            return False
        self.exit_code = exit_code(code)
        self.finished_at = now()
        self.probe_state = replace(self.probe_state, ready=False)
        self.pid_file.unlink(missing_ok=True)
        self.message = self.termination_message()
        return True

    def termination_message(self) -> str | None:
        """The message of the exit just recorded: the message file, or this start's output."""
        policy = self.spec.termination_message_policy
        file = read_message_file(self.message_file) if self.message_file is not None else None
        output = None
        if termination.wants_logs(policy, self.exit_code, file):
            with contextlib.suppress(OSError):
                output = read_end(self.log_path, termination.MAX_LOG_BYTES, start=self.log_offset)
        return termination.termination_message(policy, self.exit_code, file, output)


def empty_file(path: Path, within: Path) -> None:
    """Make `path` an empty file anyone may write (the container may run as another user),
    replacing what was there; it must lie inside `within` (a volume's or the pod's directory).

    A symlink the container left there is replaced, not followed. A directory there raises.
    """
    if not path.parent.resolve().is_relative_to(within.resolve()):
        raise ValueError(f"termination message file {path} lies outside {within}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        os.fchmod(fd, 0o666)
    finally:
        os.close(fd)


def read_end(path: Path, limit: int, start: int = 0) -> bytes:
    """At most the last `limit` bytes of the regular file `path`, from `start` on.

    A symlink is not followed and anything but a regular file (a FIFO would block) raises OSError.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError("not a regular file")
        os.lseek(fd, max(start, info.st_size - limit), os.SEEK_SET)
        data = b""
        while len(data) < limit and (chunk := os.read(fd, limit - len(data))):
            data += chunk
        return data
    finally:
        os.close(fd)


def read_message_file(path: Path) -> bytes | Unreadable | None:
    """What a termination message file holds (at most its last 4096 bytes), None when it is gone."""
    try:
        return read_end(path, termination.MAX_MESSAGE_BYTES)
    except FileNotFoundError:
        return None
    except OSError as error:
        return Unreadable(f"{path}: {error.strerror or error}")


def probe_passes(probe: Probe, pod_ip: str, ports: Mapping[str, int], exec_env: Callable[[], dict[str, str]]) -> bool:
    """Run `probe` once against the pod: an HTTP status below 400, an open port, an exit code 0."""
    action = probe.action
    timeout = probe.timeout_seconds
    try:
        if isinstance(action, HttpGet):
            url = probes.probe_url(action, pod_ip, probes.resolve_port(action.port, ports))
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return bool(200 <= response.status < 400)
        if isinstance(action, TcpSocket):
            port = probes.resolve_port(action.port, ports)
            with socket.create_connection((action.host or pod_ip, port), timeout=timeout):
                return True
        if isinstance(action, ExecAction):
            result = subprocess.run(
                list(action.command), env=exec_env(), capture_output=True, timeout=timeout, check=False
            )
            return result.returncode == 0
    except (OSError, urllib.error.URLError, subprocess.TimeoutExpired, ValueError):
        return False
    return True
