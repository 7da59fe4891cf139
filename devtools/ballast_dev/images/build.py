"""Build Ballast's images without a Docker engine: Debian's packages for the base root filesystem
(mmdebstrap), the project and its pinned requirements installed with pip from a wheelhouse, and
umoci to write the OCI image. Every input is hashed; an image whose inputs have not changed is
never rebuilt (`<cache>/images/<name>-<key>.oci.tar`).

Needs root (mmdebstrap's root mode and chroot) and Debian's mmdebstrap and umoci packages;
`scripts/setup` installs them. Run it as `scripts/build-images [operator] [trainer]`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ballast_dev.cluster.build import cache_dir
from ballast_dev.images import recipe as recipes
from ballast_dev.images.recipe import ImageRecipe

REPOSITORY = Path(__file__).resolve().parents[3]
DEBIAN_MIRROR = "http://deb.debian.org/debian"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OWN_DISTRIBUTIONS = ("ballast", "ballast_trainer", "ballast-trainer")


@dataclass(frozen=True)
class BuiltImage:
    name: str
    reference: str
    archive: str
    key: str
    archive_bytes: int  # the OCI archive, layers gzip-compressed: what a registry would store
    unpacked_bytes: int  # the root filesystem, as a container sees it
    seconds: float
    cached: bool


def images_dir() -> Path:
    return cache_dir() / "images"


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    print("+ " + " ".join(argv), flush=True)
    # PyPI only: a machine-wide find-links would leak into the image's inputs unhashed.
    env = {name: value for name, value in os.environ.items() if name != "PIP_FIND_LINKS"}
    return subprocess.run(argv, check=True, env=env)


def _pip(*args: str) -> None:
    _run([sys.executable, "-m", "pip", *args])


def source_files(paths: tuple[str, ...]) -> list[str]:
    """Files of the repository under `paths`, as git sees them (tracked or not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *paths],
        cwd=REPOSITORY,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return sorted(path for path in set(listed) if (REPOSITORY / path).is_file())


def base_rootfs(recipe: ImageRecipe) -> Path:
    """Debian's minimal root filesystem with the recipe's packages, as a tar (cached)."""
    key = recipes.base_key(recipe, DEBIAN_MIRROR)
    target = images_dir() / f"base-{key}.tar"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    _run(
        [
            "mmdebstrap",
            "--quiet",
            "--mode=root",
            "--variant=minbase",
            "--format=tar",
            f"--include={','.join(recipe.debian_packages)}",
            # What python:slim leaves out too: manuals, documentation (copyrights kept), translations.
            *[f"--dpkgopt={option}" for option in recipes.DPKG_PATH_FILTERS],
            recipes.DEBIAN_SUITE,
            str(partial),
            DEBIAN_MIRROR,
        ]
    )
    partial.replace(target)
    return target


def stage_sources(recipe: ImageRecipe, into: Path) -> Path:
    """The recipe's files, as git lists them, copied under `into`: what the Dockerfile's COPY
    lines take, and where wheels are built (setuptools leaves build/ folders where it builds)."""
    for path in source_files(recipe.sources):
        copied = into / path
        copied.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPOSITORY / path, copied)
    return into


def wheelhouse(recipe: ImageRecipe) -> Path:
    """Wheels of every third-party requirement, pinned by the pyproject files (cached)."""
    pyprojects = [(REPOSITORY / dist / "pyproject.toml").read_bytes() for dist in recipe.distributions]
    target = images_dir() / f"wheels-{recipe.name}-{recipes.dependencies_key(pyprojects)}"
    if target.exists():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory() as scratch:
        sources = stage_sources(recipe, Path(scratch))
        dists = [str(sources / dist) for dist in recipe.distributions]
        # pip itself too: the image gets it from the wheelhouse, as python:slim has it, not from Debian.
        _pip("wheel", "--quiet", "--wheel-dir", str(partial), *dists, f"pip=={recipes.PIP_VERSION}")
    for own in partial.iterdir():  # built from this checkout on every image build instead
        if own.name.split("-")[0] in OWN_DISTRIBUTIONS:
            own.unlink()
    partial.replace(target)
    return target


def own_wheels(recipe: ImageRecipe, work: Path) -> list[Path]:
    sources = stage_sources(recipe, work / "sources")
    into = work / "own-wheels"
    _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(into), *[str(sources / d) for d in recipe.distributions])
    return sorted(into.glob("*.whl"))


@contextlib.contextmanager
def _bound(source: Path, target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    _run(["mount", "--bind", "-o", "ro", str(source), str(target)])
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)
        target.rmdir()


def assemble_rootfs(recipe: ImageRecipe, base: Path, wheels: Path, work: Path) -> Path:
    """Unpack the base, add the user, copy the sources and pip-install them: the Dockerfile's steps."""
    rootfs = work / "rootfs"
    rootfs.mkdir()
    # Device nodes are the runtime's business: an image carries none.
    _run(["tar", "-xpf", str(base), "-C", str(rootfs), "--numeric-owner", "--exclude=./dev/*"])
    user = recipe.user
    useradd = ["useradd", "--uid", str(user.uid), "--home-dir", user.home, user.name]
    useradd.insert(1, "--create-home" if user.create_home else "--no-create-home")
    _run(["chroot", str(rootfs), *useradd])
    stage_sources(recipe, rootfs / recipe.workdir.lstrip("/"))
    own = own_wheels(recipe, work)
    pip_wheel = next(wheels.glob(f"pip-{recipes.PIP_VERSION}-*.whl"))
    with _bound(wheels, rootfs / "tmp" / "wheels"), _bound(own[0].parent, rootfs / "tmp" / "own-wheels"):
        _run(
            [
                "chroot",
                str(rootfs),
                "python3",
                f"/tmp/wheels/{pip_wheel.name}/pip",  # pip runs from its own wheel, then installs itself
                "install",
                "--quiet",
                "--no-index",
                "--no-cache-dir",
                "--break-system-packages",  # Debian's python3, as python:slim's: the image is the environment
                "--root-user-action=ignore",
                "--find-links=/tmp/wheels",
                "--find-links=/tmp/own-wheels",
                f"pip=={recipes.PIP_VERSION}",
                *[f"/tmp/own-wheels/{wheel.name}" for wheel in own],
            ]
        )
    for volume in recipe.volumes:
        (rootfs / volume.lstrip("/")).mkdir(parents=True, exist_ok=True)
    shutil.rmtree(rootfs / "root" / ".cache", ignore_errors=True)
    return rootfs


def write_oci(recipe: ImageRecipe, rootfs: Path, work: Path, archive: Path) -> None:
    """One layer with the whole root filesystem, the config the Dockerfile would give, and the
    name containerd's importer reads (`io.containerd.image.name`)."""
    layout = work / "layout"
    image = f"{layout}:{recipe.tag}"
    _run(["umoci", "init", "--layout", str(layout)])
    _run(["umoci", "new", "--image", image])
    _run(["umoci", "insert", "--image", image, str(rootfs), "/"])
    # The layer holds it all now: free its size before the archive takes as much again.
    shutil.rmtree(rootfs)
    config = ["umoci", "config", "--image", image, f"--config.user={recipe.user.uid}"]
    config += [f"--config.workingdir={recipe.workdir}", f"--config.env=PATH={PATH}"]
    config += [f"--config.env={name}={value}" for name, value in recipe.env]
    config += [f"--config.entrypoint={part}" for part in recipe.entrypoint]
    config += [f"--config.cmd={part}" for part in recipe.cmd]
    config += [f"--config.exposedports={port}" for port in recipe.exposed_ports]
    config += [f"--config.volume={volume}" for volume in recipe.volumes]
    config += [f"--config.label=org.opencontainers.image.version={recipes.VERSION}"]
    _run(config)
    _run(["umoci", "gc", "--layout", str(layout)])
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    for manifest in index["manifests"]:
        manifest.setdefault("annotations", {})["io.containerd.image.name"] = recipe.reference
    index_path.write_text(json.dumps(index))
    partial = archive.with_suffix(".partial")
    _run(["tar", "-C", str(layout), "--numeric-owner", "-cf", str(partial), "oci-layout", "index.json", "blobs"])
    partial.replace(archive)


def _tree_bytes(root: Path) -> int:
    out = subprocess.run(["du", "-sb", str(root)], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def build(recipe: ImageRecipe) -> BuiltImage:
    started = time.monotonic()
    base = base_rootfs(recipe)
    wheels = wheelhouse(recipe)
    files = [(path, (REPOSITORY / path).read_bytes()) for path in source_files(recipe.sources)]
    key = recipes.image_key(recipe, base.stem, wheels.name, files)
    archive = images_dir() / f"{recipe.name}-{key}.oci.tar"
    record = images_dir() / f"{recipe.name}.json"
    if archive.exists() and record.exists():
        built = BuiltImage(**json.loads(record.read_text()))
        if built.key == key:
            return BuiltImage(**{**asdict(built), "seconds": round(time.monotonic() - started, 1), "cached": True})
    with tempfile.TemporaryDirectory(dir=images_dir(), prefix=f"build-{recipe.name}-") as scratch:
        work = Path(scratch)
        rootfs = assemble_rootfs(recipe, base, wheels, work)
        unpacked = _tree_bytes(rootfs)
        write_oci(recipe, rootfs, work, archive)
    for stale in images_dir().glob(f"{recipe.name}-*.oci.tar"):
        if stale != archive:
            stale.unlink()
    built = BuiltImage(
        name=recipe.name,
        reference=recipe.reference,
        archive=str(archive),
        key=key,
        archive_bytes=archive.stat().st_size,
        unpacked_bytes=unpacked,
        seconds=round(time.monotonic() - started, 1),
        cached=False,
    )
    record.write_text(json.dumps(asdict(built), indent=2))
    return built


def built(name: str) -> BuiltImage | None:
    """The last image built for `name`, if its archive is still there (no staleness check)."""
    record = images_dir() / f"{name}.json"
    if not record.exists():
        return None
    image = BuiltImage(**json.loads(record.read_text()))
    return image if Path(image.archive).exists() else None


def main(argv: list[str]) -> int:
    names = argv or list(recipes.RECIPES)
    unknown = [name for name in names if name not in recipes.RECIPES]
    if unknown:
        print(f"unknown image {unknown[0]!r}: choose from {', '.join(recipes.RECIPES)}", file=sys.stderr)
        return 2
    for name in names:
        image = build(recipes.RECIPES[name])
        how = "unchanged, not rebuilt" if image.cached else "built"
        print(
            f"{image.reference}: {how} in {image.seconds} s; archive {image.archive_bytes / 1e6:.0f} MB,"
            f" unpacked {image.unpacked_bytes / 1e6:.0f} MB ({image.archive})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
