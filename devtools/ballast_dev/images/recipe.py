"""What goes into Ballast's two images, and the cache key of each: pure data, no I/O.

The Dockerfiles (`operator/Dockerfile`, `trainer-image/Dockerfile`) stay the recipe for users with
a normal builder; these recipes mirror them for a machine without a Docker engine: the same user,
working directory, installed distributions, environment, entrypoint and command. The base root
filesystem is Debian bookworm's own Python 3.11 from Debian's packages instead of python:slim's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

DEBIAN_SUITE = "bookworm"
# Bump when the way an image is assembled changes, so every cached image is rebuilt.
BUILDER_REVISION = "1"
VERSION = "0.1.0"
# The pip the image installs with and keeps (python:slim ships one too).
PIP_VERSION = "26.3"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    home: str
    create_home: bool


@dataclass(frozen=True)
class ImageRecipe:
    name: str
    reference: str  # repository:tag, as the chart's values name it
    debian_packages: tuple[str, ...]
    distributions: tuple[str, ...]  # source folders (relative to the repository) pip installs, in order
    user: User
    env: tuple[tuple[str, str], ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    workdir: str = "/opt/ballast"
    # Files of the repository copied to the workdir, as the Dockerfile's COPY lines.
    sources: tuple[str, ...] = field(default=("pyproject.toml", "README.md", "operator"))

    @property
    def repository(self) -> str:
        return self.reference.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1]


# pip comes from the wheelhouse (Debian's python3-pip pulls perl in); ca-certificates for TLS stores.
BASE_PACKAGES = ("python3", "ca-certificates")
DPKG_PATH_FILTERS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)

OPERATOR = ImageRecipe(
    name="operator",
    reference=f"ghcr.io/ballast-dev/ballast:{VERSION}",
    debian_packages=BASE_PACKAGES,
    distributions=(".",),
    user=User("ballast", 10001, "/tmp", create_home=False),
    env=(("PYTHONUNBUFFERED", "1"), ("HOME", "/tmp")),
    entrypoint=("ballast",),
    cmd=("operator", "--all-namespaces"),
    exposed_ports=("8080/tcp",),
)

TRAINER = ImageRecipe(
    name="trainer",
    reference=f"ghcr.io/ballast-dev/trainer:{VERSION}",
    # OpenCV (an Ultralytics dependency) links these.
    debian_packages=(*BASE_PACKAGES, "libgl1", "libglib2.0-0"),
    distributions=(".", "trainer-image"),
    user=User("trainer", 10001, "/home/trainer", create_home=True),
    env=(
        ("YOLO_OFFLINE", "true"),
        ("YOLO_AUTOINSTALL", "false"),
        ("PYTHONUNBUFFERED", "1"),
        ("TMPDIR", "/scratch"),
    ),
    entrypoint=("ballast-trainer",),
    volumes=("/scratch",),
    sources=("pyproject.toml", "README.md", "operator", "trainer-image"),
)

RECIPES = {recipe.name: recipe for recipe in (OPERATOR, TRAINER)}


def _digest(parts: Iterable[bytes]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return hasher.hexdigest()[:16]


def base_key(recipe: ImageRecipe, mirror: str) -> str:
    """The Debian root filesystem depends on the suite, the mirror and the package list only."""
    packages = sorted(recipe.debian_packages)
    return _digest([DEBIAN_SUITE.encode(), mirror.encode(), *(p.encode() for p in [*packages, *DPKG_PATH_FILTERS])])


def dependencies_key(pyprojects: Iterable[bytes]) -> str:
    """The wheelhouse of third-party wheels depends on the pinned requirements and pip only."""
    return _digest([PIP_VERSION.encode(), *pyprojects])


def image_key(recipe: ImageRecipe, base: str, dependencies: str, files: Iterable[tuple[str, bytes]]) -> str:
    """The image depends on its base, its wheels, every source file it copies and the recipe itself."""
    parts = [BUILDER_REVISION.encode(), repr(recipe).encode(), base.encode(), dependencies.encode()]
    for path, content in sorted(files):
        parts += [path.encode(), content]
    return _digest(parts)
