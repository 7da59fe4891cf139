"""Which files each volume holds, where each mount goes, and the script that mounts them.

Pure: the ConfigMaps, Secrets and service-account tokens a volume needs are fetched by `sources`
and handed in; the files are written there too. Paths here are strings, already resolved
(`os.path.realpath`) by the caller where symlinks matter.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from .env import PodFacts, SourceNotFetched, SourceRef, field_value


@dataclass(frozen=True)
class KeyToPath:
    key: str
    path: str


@dataclass(frozen=True)
class DataFiles:
    """A ConfigMap's or Secret's keys as files: only `items` when given, else every key."""

    source: SourceRef
    items: tuple[KeyToPath, ...] = ()


@dataclass(frozen=True)
class DownwardFile:
    """A downwardAPI item: a pod field as a file (empty when the item names no fieldRef)."""

    path: str
    field_path: str | None = None


@dataclass(frozen=True)
class ServiceAccountToken:
    """A projected token, issued for the pod once when it starts."""

    path: str
    audience: str | None = None
    expiration_seconds: int = 3600


VolumeSource = DataFiles | DownwardFile | ServiceAccountToken


@dataclass(frozen=True)
class Volume:
    """A pod volume: a host directory, or a fresh directory filled from `sources` (emptyDir: none)."""

    name: str
    host_path: str | None = None
    sources: tuple[VolumeSource, ...] = ()


@dataclass(frozen=True)
class VolumeMount:
    name: str
    mount_path: str
    sub_path: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class Mount:
    """A bind mount of `source` (a host path) at `target` in the container's mount namespace."""

    source: str
    target: str
    read_only: bool = False


def volume_needs(volume: Volume) -> list[SourceRef | ServiceAccountToken]:
    """What must be fetched before `volume` can be filled, in the order the kubelet fetches it."""
    if volume.host_path is not None:
        return []
    needs: list[SourceRef | ServiceAccountToken] = []
    for source in volume.sources:
        if isinstance(source, DataFiles):
            needs.append(source.source)
        elif isinstance(source, ServiceAccountToken):
            needs.append(source)
    return list(dict.fromkeys(needs))


def select_items(data: Mapping[str, bytes], items: Sequence[KeyToPath]) -> list[tuple[str, bytes]]:
    """The files of a ConfigMap or Secret volume: the listed keys that exist, else every key."""
    if items:
        return [(item.path, data[item.key]) for item in items if item.key in data]
    return list(data.items())


def volume_files(
    volume: Volume,
    data: Mapping[SourceRef, Mapping[str, bytes]],
    tokens: Mapping[ServiceAccountToken, str],
    pod: PodFacts,
) -> list[tuple[str, bytes]]:
    """The files to write into `volume`'s directory, as (relative path, content), in writing order."""
    files: list[tuple[str, bytes]] = []
    for source in volume.sources:
        if isinstance(source, DataFiles):
            if source.source not in data:
                raise SourceNotFetched(source.source)
            files += select_items(data[source.source], source.items)
        elif isinstance(source, DownwardFile):
            value = field_value(source.field_path, pod) if source.field_path else ""
            files.append((source.path, value.encode()))
        else:
            if source not in tokens:
                raise SourceNotFetched(source)
            files.append((source.path, tokens[source].encode()))
    return files


def covers(mount_point: str, path: str) -> bool:
    """Would a mount at `mount_point` hide `path` (the path itself or anything above it)?"""
    return (path.rstrip("/") + "/").startswith(mount_point.rstrip("/") + "/")


def would_hide(mount_point: str, protected: Sequence[str]) -> bool:
    """Would a mount at `mount_point` hide any of `protected` (the agent's Python, its state)?"""
    return any(covers(mount_point, path) for path in protected)


def plan_mounts(
    container: str, mounts: Sequence[VolumeMount], volume_dirs: Mapping[str, str], hidden: Mapping[str, bool]
) -> tuple[list[Mount], list[VolumeMount]]:
    """The bind mounts a container gets, and the mounts left out because `hidden[mount_path]` says
    they would hide the agent's own program (the host path stays visible to the container then).

    An emptyDir on /tmp while the project (its Python) lives under /tmp is such a mount: mounting
    it would hide the very program the container runs. A mount of an unknown volume raises.
    """
    planned: list[Mount] = []
    skipped: list[VolumeMount] = []
    for mount in mounts:
        if mount.name not in volume_dirs:
            raise ValueError(f"container {container} mounts unknown volume {mount.name}")
        if hidden.get(mount.mount_path, False):
            skipped.append(mount)
            continue
        source = str(PurePosixPath(volume_dirs[mount.name]) / mount.sub_path)
        planned.append(Mount(source, mount.mount_path, mount.read_only))
    return planned, skipped


def hides_a_source(target: str, mounts: Sequence[Mount]) -> bool:
    """Would a mount at `target` hide the source of another of `mounts`?"""
    prefix = target.rstrip("/") + "/"
    return any(other.target != target and (other.source + "/").startswith(prefix) for other in mounts)


def mount_order(mounts: Sequence[Mount]) -> list[Mount]:
    """Mounts in the order to make them: those that would hide another's source last (an emptyDir
    on /tmp while the state directory lives under /tmp), then shallower targets first."""
    return sorted(mounts, key=lambda m: (hides_a_source(m.target, mounts), m.target.count("/")))


def in_mount_namespace(argv: Sequence[str], mounts: Sequence[Mount], container: str) -> list[str]:
    """`argv` run in a private mount namespace where `mounts` appear at their targets.

    Other processes on the machine see nothing of these mounts. A source that is a file is mounted
    on a file (an existing one is left as it is). Read-only mounts become read-only once every
    mount is made, so a mount point inside one (a termination message file) can still be created.
    Without mounts, `argv` runs as it is.
    """
    if not mounts:
        return list(argv)
    script = ["set -e"]
    ordered = mount_order(mounts)
    for mount in ordered:
        source, target = shlex.quote(mount.source), shlex.quote(mount.target)
        script.append(
            f'if [ -d {source} ]; then mkdir -p {target}; else mkdir -p "$(dirname {target})"; '
            f"[ -e {target} ] || touch {target}; fi"
        )
        script.append(f"mount --bind {source} {target}")
    script += [f"mount -o remount,ro,bind {shlex.quote(m.target)}" for m in ordered if m.read_only]
    script.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script), container, *argv]
