"""Build the local cluster's binaries from upstream Go modules, once, into a cache.

Nothing is downloaded from release sites: every binary is compiled from source fetched through the
Go module proxy at a pinned version. Builds land in ``<cache>/bin/<name>-<version>``; a binary that
is already there is never rebuilt, and GOMODCACHE/GOCACHE are reused so a second build after a
version bump only recompiles what changed.

Run it directly for a cold build with timings: ``python -m ballast_dev.cluster.build``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
# MinIO publishes no semver tags; this pseudo-version is the last commit of its source repository.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
HELM_VERSION = "v3.22.0"
# Part of the helm binary's cache name: bump it when the way helm is built changes, so caches rebuild.
# r2: stamped with its version and its client-go's Kubernetes version, as Helm's release builds are.
HELM_BUILD = "r2"

PAUSE_SOURCE = Path(__file__).parent / "pause" / "main.go"
KUBERNETES_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "kube-proxy",
)


def cache_dir() -> Path:
    """Where binaries and generated wrapper modules live (``$BALLAST_CACHE`` or ~/.cache/ballast)."""
    return Path(os.environ.get("BALLAST_CACHE", Path.home() / ".cache" / "ballast"))


@dataclass(frozen=True)
class Binary:
    name: str
    version: str

    @property
    def path(self) -> Path:
        return cache_dir() / "bin" / f"{self.name}-{self.version}"


BINARIES = {
    **{name: Binary(name, KUBERNETES_VERSION) for name in KUBERNETES_COMMANDS},
    "etcd": Binary("etcd", ETCD_VERSION),
    "minio": Binary("minio", MINIO_VERSION[-12:]),
    "helm": Binary("helm", f"{HELM_VERSION}-{HELM_BUILD}"),
    # The real node's pod sandbox process (pause/main.go); the version is its source's hash.
    "pause": Binary("pause", hashlib.sha256(PAUSE_SOURCE.read_bytes()).hexdigest()[:12]),
}


def binary(name: str) -> Path:
    return BINARIES[name].path


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-mod=mod")
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def _go(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    print(f"+ go {' '.join(args)}  (in {cwd})", flush=True)
    subprocess.run(["go", *args], cwd=cwd, env=env or _go_env(), check=True)


def _go_json(args: list[str], cwd: Path) -> dict:
    out = subprocess.run(["go", *args], cwd=cwd, env=_go_env(), check=True, capture_output=True)
    return json.loads(out.stdout)


def staging_replaces(kubernetes_gomod: str, version: str) -> list[tuple[str, str]]:
    """Map every staging module that k8s.io/kubernetes replaces with ./staging to its published tag.

    ``k8s.io/kubernetes`` requires its staging modules at v0.0.0 and redirects them to local
    folders; Go ignores a dependency's replaces, so the wrapper must point each one at the
    published ``v0.<minor>.<patch>`` that corresponds to Kubernetes ``v1.<minor>.<patch>``.
    """
    published = "v0." + version.removeprefix("v1.")
    modules = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", kubernetes_gomod, re.MULTILINE)
    if not modules:
        raise RuntimeError("no staging replaces found in the k8s.io/kubernetes go.mod")
    return [(module, published) for module in sorted(set(modules))]


def _write_module(workdir: Path, text: str) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    gomod = workdir / "go.mod"
    if not gomod.exists() or gomod.read_text() != text:
        gomod.write_text(text)
        (workdir / "go.sum").unlink(missing_ok=True)


def build_kubernetes() -> None:
    wanted = [BINARIES[name] for name in KUBERNETES_COMMANDS]
    if all(b.path.exists() for b in wanted):
        return
    workdir = cache_dir() / "src" / f"kubernetes-{KUBERNETES_VERSION}"
    workdir.mkdir(parents=True, exist_ok=True)
    info = _go_json(["mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"], workdir)
    upstream = Path(info["GoMod"]).read_text()
    go_line = re.search(r"^go (\S+)", upstream, re.MULTILINE)
    godebug = re.search(r"^godebug (.+)$", upstream, re.MULTILINE)
    lines = ["module ballast.local/kubernetes-binaries", "", f"go {go_line.group(1) if go_line else '1.26.0'}"]
    if godebug:
        lines.append(f"godebug {godebug.group(1)}")
    lines += ["", f"require k8s.io/kubernetes {KUBERNETES_VERSION}", "", "replace ("]
    lines += [f"\t{module} => {module} {tag}" for module, tag in staging_replaces(upstream, KUBERNETES_VERSION)]
    lines += [")", ""]
    _write_module(workdir, "\n".join(lines))
    packages = [f"k8s.io/kubernetes/cmd/{name}" for name in KUBERNETES_COMMANDS]
    _go(["get", *[f"{p}@{KUBERNETES_VERSION}" for p in packages]], workdir)
    minor = KUBERNETES_VERSION.split(".")[1]
    stamp = "k8s.io/component-base/version"
    ldflags = (
        f"-s -w -X {stamp}.gitVersion={KUBERNETES_VERSION} -X {stamp}.gitMajor=1 -X {stamp}.gitMinor={minor}"
        f" -X {stamp}.gitTreeState=clean"
    )
    out = workdir / "out"
    _go(["build", "-trimpath", "-ldflags", ldflags, "-o", str(out) + "/", *packages], workdir)
    for b in wanted:
        _install(out / b.name, b)


def build_etcd() -> None:
    target = BINARIES["etcd"]
    if target.path.exists():
        return
    workdir = cache_dir() / "src" / f"etcd-{ETCD_VERSION}"
    _write_module(
        workdir, f"module ballast.local/etcd-binary\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n"
    )
    _go(["get", f"go.etcd.io/etcd/server/v3@{ETCD_VERSION}"], workdir)
    out = workdir / "out"
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "etcd"), "go.etcd.io/etcd/server/v3"], workdir)
    _install(out / "etcd", target)


def _go_install(module: str, version: str, command: str, target: Binary, ldflags: str = "-s -w") -> None:
    if target.path.exists():
        return
    gobin = cache_dir() / "src" / f"{target.name}-gobin"
    gobin.mkdir(parents=True, exist_ok=True)
    env = _go_env() | {"GOBIN": str(gobin), "GOFLAGS": ""}
    _go(["install", "-trimpath", "-ldflags", ldflags, f"{module}@{version}"], cache_dir(), env)
    _install(gobin / command, target)


def build_minio() -> None:
    _go_install("github.com/minio/minio", MINIO_VERSION, "minio", BINARIES["minio"])


def helm_ldflags(version: str, helm_gomod: str) -> str:
    """The version stamps Helm's Makefile sets: without them `helm version` says "v3.22" and
    `helm template`/`lint` assume Kubernetes v1.20 (failing any chart's `kubeVersion: >=1.30`).
    The Kubernetes version is the one its client-go implies (v0.37.x -> 1.37), as in the Makefile."""
    client_go = re.search(r"^\s*k8s\.io/client-go\s+v0\.(\d+)\.", helm_gomod, re.MULTILINE)
    if not client_go:
        raise RuntimeError("no k8s.io/client-go requirement found in helm's go.mod")
    flags = ["-s -w", f"-X helm.sh/helm/v3/internal/version.version={version}"]
    flags += ["-X helm.sh/helm/v3/internal/version.metadata=", "-X helm.sh/helm/v3/internal/version.gitTreeState=clean"]
    for package in ("pkg/chartutil", "pkg/lint/rules"):
        flags += [f"-X helm.sh/helm/v3/{package}.k8sVersionMajor=1"]
        flags += [f"-X helm.sh/helm/v3/{package}.k8sVersionMinor={client_go.group(1)}"]
    return " ".join(flags)


def build_helm() -> None:
    target = BINARIES["helm"]
    if target.path.exists():
        return
    cache_dir().mkdir(parents=True, exist_ok=True)
    info = _go_json(["mod", "download", "-json", f"helm.sh/helm/v3@{HELM_VERSION}"], cache_dir())
    ldflags = helm_ldflags(HELM_VERSION, Path(info["GoMod"]).read_text())
    _go_install("helm.sh/helm/v3/cmd/helm", HELM_VERSION, "helm", target, ldflags)


def build_pause() -> None:
    target = BINARIES["pause"]
    if target.path.exists():
        return
    workdir = cache_dir() / "src" / "pause"
    _write_module(workdir, "module ballast.local/pause\n\ngo 1.24\n")
    (workdir / "main.go").write_bytes(PAUSE_SOURCE.read_bytes())
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(workdir / "pause"), "."], workdir)
    _install(workdir / "pause", target)


def _install(built: Path, target: Binary) -> None:
    target.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.path.with_suffix(".tmp")
    tmp.write_bytes(built.read_bytes())
    tmp.chmod(0o755)
    tmp.replace(target.path)  # atomic: a half-copied binary is never mistaken for a built one


BUILDERS = {
    "etcd": build_etcd,
    "kubernetes": build_kubernetes,
    "minio": build_minio,
    "helm": build_helm,
    "pause": build_pause,
}


def link_binaries() -> Path:
    """`<cache>/links/<name>` -> the pinned binary, so `PATH=<cache>/links:$PATH` gives kubectl, helm..."""
    links = cache_dir() / "links"
    links.mkdir(parents=True, exist_ok=True)
    for name, target in BINARIES.items():
        if target.path.exists():
            link = links / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target.path)
    return links


def missing() -> list[str]:
    return [name for name, b in BINARIES.items() if not b.path.exists()]


def build_all(only: list[str] | None = None) -> dict[str, float]:
    """Build every missing binary; return seconds spent per builder (0 for a cache hit)."""
    timings: dict[str, float] = {}
    for name, builder in BUILDERS.items():
        if only and name not in only:
            continue
        started = time.monotonic()
        builder()
        timings[name] = round(time.monotonic() - started, 1)
        print(f"built {name} in {timings[name]} s", flush=True)
    link_binaries()
    return timings


if __name__ == "__main__":
    print(json.dumps(build_all(sys.argv[1:] or None)))
