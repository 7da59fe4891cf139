"""Termination messages, as the kubelet reports them: where a container's message file lives, and
which message its `terminated` state carries.

Each start of a container gets an empty message file, seen inside the container at its
`terminationMessagePath`. Containers here share the host's filesystem, so where that file can be
is a choice (`message_file`):

- inside a volume the container mounts writable (an emptyDir, say): the file at the matching place
  in the volume's directory, emptied at each start; nothing more is mounted. Ballast's Jobs write
  `/scratch/termination-log` in an emptyDir mounted at /scratch;
- elsewhere (outside every mount, or inside a read-only or hostPath one): a host file of this
  start, bind-mounted at the path in the container's mount namespace. The mount point is created
  on the host if missing (an empty file), as the runtime would create it in the container;
- under /dev outside every mount, the default `/dev/termination-log` included: nothing. Creating
  the mount point would create a file in the host's own /dev, which is shared. The message is
  then as for a missing file: none, or the log's tail under `FallbackToLogsOnError`.

When the container exits, `termination_message` picks what to report the way the kubelet does:
the last 4096 bytes of the file; with `FallbackToLogsOnError`, an empty (or missing) file and a
non-zero exit take the last 80 lines of the container's output, at most 2048 bytes; no message
when there is nothing.

Pure: the worker creates and reads the files (`containers`) and hands the bytes in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from .volumes import Mount, covers, mount_order

DEFAULT_PATH = "/dev/termination-log"
FILE = "File"
FALLBACK_TO_LOGS_ON_ERROR = "FallbackToLogsOnError"
MAX_MESSAGE_BYTES = 4096  # the kubelet's MaxContainerTerminationMessageLength
MAX_LOG_LINES = 80  # MaxContainerTerminationMessageLogLines
MAX_LOG_BYTES = 2048  # MaxContainerTerminationMessageLogLength


@dataclass(frozen=True)
class InVolume:
    """The message is the file `host_path`, inside `volume_dir`, the directory of a volume the
    container mounts writable above the message path; it is emptied at each start."""

    host_path: str
    volume_dir: str


@dataclass(frozen=True)
class OwnFile:
    """The message is a host file of this start, bind-mounted at `target`."""

    target: str


@dataclass(frozen=True)
class NoFile:
    """No file is offered at the path, for `reason`; the message is as for a missing file."""

    reason: str


MessageFile = InVolume | OwnFile | NoFile


@dataclass(frozen=True)
class Unreadable:
    """A message file that exists but could not be read (a directory, a FIFO, a symlink)."""

    reason: str


def clean_path(path: str) -> str | None:
    """`path` with `.`, doubled and trailing slashes removed; None unless absolute and free of `..`."""
    parts = PurePosixPath(path).parts
    if not path.startswith("/") or ".." in parts:
        return None
    return "/" + "/".join(parts[1:])


def message_file(path: str, mounts: Sequence[Mount], pod_volumes: str, hides_agent: bool = False) -> MessageFile:
    """Where the message file of a container lives, given the `mounts` it gets (volumes only).

    `pod_volumes` is the directory holding the pod's own volumes (every kind but hostPath);
    `hides_agent` says a mount at `path` would hide the agent's program or state.
    """
    clean = clean_path(path)
    if clean is None:
        return NoFile(f"{path} is not an absolute path without ..")
    if hides_agent:
        return NoFile(f"a mount at {clean} would hide the node agent")
    covering = [(m, target) for m in mount_order(mounts) if (target := clean_path(m.target)) and covers(target, clean)]
    if covering:
        mount, target = covering[-1]  # the last made is the one the container sees
        if target == clean:
            # Mounted on the volume's own mount point, where a read-only remount would catch it too.
            return NoFile(f"{clean} is a read-only mount point") if mount.read_only else OwnFile(clean)
        if covers(pod_volumes, mount.source) and not mount.read_only:
            inside = PurePosixPath(clean).relative_to(target)
            return InVolume(str(PurePosixPath(mount.source) / inside), mount.source)
        return OwnFile(clean)
    if covers("/dev", clean):
        return NoFile(f"{clean} would be created in the host's /dev")
    return OwnFile(clean)


def wants_logs(policy: str, exit_code: int | None, file: bytes | Unreadable | None) -> bool:
    """Does the message come from the container's output: FallbackToLogsOnError, a non-zero exit,
    and an empty or missing file (an unreadable one says so instead)."""
    return policy == FALLBACK_TO_LOGS_ON_ERROR and exit_code not in (None, 0) and not file


def last_lines(data: bytes, lines: int) -> bytes:
    """The last `lines` lines of `data` (a final newline ends the last line, it starts none)."""
    cut = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(lines):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            return data
    return data[cut + 1 :]


def log_tail(output: bytes) -> bytes:
    """What the kubelet takes from a container's output: its last 80 lines, at most their last 2048 bytes."""
    return last_lines(output, MAX_LOG_LINES)[-MAX_LOG_BYTES:]


def termination_message(
    policy: str, exit_code: int | None, file: bytes | Unreadable | None, output: bytes | None = None
) -> str | None:
    """The `message` of a container's `terminated` state, or None for no message.

    `file` is what the message file held (None when there was none), `output` what the container
    wrote to its log in this start (read only when `wants_logs`). Bytes that are not UTF-8 read as
    U+FFFD, as the apiserver's JSON would have them.
    """
    if isinstance(file, Unreadable):
        return f"Error on reading termination log: {file.reason}"
    if wants_logs(policy, exit_code, file):
        return log_tail(output or b"").decode(errors="replace") or None
    return (file or b"")[-MAX_MESSAGE_BYTES:].decode(errors="replace") or None
