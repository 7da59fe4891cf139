"""The real node: a kubelet (the control plane's Kubernetes release) on Debian's containerd and
runc, CNI networking (bridge + host-local) and kube-proxy, with Ballast's images imported into
containerd's `k8s.io` namespace so that no image is ever pulled.

Every packet stays on this machine. Pods live on the bridge `ballast0` (POD_CIDR); the host's side
of it, HOST_ADDRESS, is where the apiserver and MinIO listen for pods. The service range is routed
to the bridge, and a forward rule drops whatever a pod sends anywhere but the bridge.

What the sandbox this runs in needs (see ../shared/notes/real-node.md): containerd's
`restrict_oom_score_adj` (no CAP_SYS_RESOURCE), the kubelet's cgroup-v1 opt-in with the cgroupfs
driver, and no local-storage isolation (no filesystem stats for the root device).

`plane.up` claims the machine's node (`claim`), prepares the network, writes these settings and
starts containerd, the kubelet and kube-proxy. `plane.down` drains the pods through the kubelet,
then `remove_containers`, stops the processes and `sweep`s what they leave behind: mounts, network
namespaces, veths, the bridge, the route, iptables chains; it reports anything it could not remove.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ballast_dev.cluster import build

BRIDGE = "ballast0"
POD_CIDR = "10.244.0.0/24"
HOST_ADDRESS = "10.244.0.1"
# A chain of ours in FORWARD: pods reach the bridge and nothing beyond this machine.
FORWARD_CHAIN = "BALLAST-NODE-FORWARD"
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle")
OUR_CHAINS = ("KUBE-", "BALLAST-", "CNI-")
CLAIM = Path("/run/ballast-kubelet-node.owner")
PAUSE_REFERENCE = "ballast.local/pause:1"
CNI_PLUGINS = Path("/usr/lib/cni")
REQUIRED_COMMANDS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip", "umoci")
RUNTIME_PACKAGES = "containerd runc containernetworking-plugins iptables iproute2 umoci"


@dataclass(frozen=True)
class NodePaths:
    """Where the node keeps what. A unix socket path has 108 bytes at most, and the kubelet and
    containerd create sockets under their folders: those get short paths of their own, named
    after the cluster's state directory, whatever its depth."""

    state: Path  # <cluster state>/node-kubelet: configuration, certificates, pod logs
    run: Path  # /run/ballast-node-<tag>: containerd's socket and state
    kubelet_root: Path  # /var/lib/ballast-node-<tag>/kubelet: pod volumes (on disk, not in memory)

    @classmethod
    def of(cls, cluster_state: Path) -> NodePaths:
        tag = hashlib.sha256(str(cluster_state).encode()).hexdigest()[:8]
        return cls(
            cluster_state / "node-kubelet",
            Path("/run") / f"ballast-node-{tag}",
            Path("/var/lib") / f"ballast-node-{tag}" / "kubelet",
        )

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def image_store(self) -> Path:
        """containerd's root: its content and unpacked snapshots are a cache of the machine, like
        the images' archives, so the next `up` imports nothing that has not changed. No container
        outlives a cluster in it (remove_containers)."""
        return build.cache_dir() / "containerd"

    @property
    def cni_config(self) -> Path:
        return self.state / "cni" / "net.d"

    @property
    def cni_ipam(self) -> Path:
        return self.state / "cni" / "ipam"

    @property
    def pod_logs(self) -> Path:
        return self.state / "pod-logs"


def missing_requirements() -> list[str]:
    missing = [command for command in REQUIRED_COMMANDS if shutil.which(command) is None]
    if os.geteuid() != 0:
        missing.append("root (the kubelet, containerd and the network need it)")
    if not (CNI_PLUGINS / "bridge").exists():
        missing.append(f"{CNI_PLUGINS}/bridge")
    return missing


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


# --- network ------------------------------------------------------------------------------------


def claim(paths: NodePaths, is_up: Callable[[Path], bool]) -> None:
    """One kubelet node per machine: the bridge, its addresses and the iptables rules are the
    machine's. A claim whose cluster is no longer up is stale and taken over."""
    owner = CLAIM.read_text().strip() if CLAIM.exists() else ""
    if owner and owner != str(paths.state.parent) and is_up(Path(owner)):
        raise RuntimeError(
            f"another kubelet node is up on this machine (cluster {owner}): only one can own {BRIDGE}"
            f" and {POD_CIDR}; stop it first (`ballast-dev cluster --state-dir {owner} down`)"
        )
    CLAIM.parent.mkdir(parents=True, exist_ok=True)
    CLAIM.write_text(str(paths.state.parent) + "\n")


def prepare_network(service_cidr: str) -> None:
    """The bridge with the host's address on it (so the apiserver can listen there before any pod
    exists), the service range routed to it, forwarding on, and the forward fence."""
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addresses = _run(["ip", "-4", "-o", "addr", "show", "dev", BRIDGE]).stdout
    if f" {HOST_ADDRESS}/" not in addresses:
        _run(["ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])
    _run(["ip", "route", "replace", service_cidr, "dev", BRIDGE])
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    if _run(["iptables", "-w", "-S", FORWARD_CHAIN], check=False).returncode != 0:
        _run(["iptables", "-w", "-N", FORWARD_CHAIN])
    _run(["iptables", "-w", "-F", FORWARD_CHAIN])
    # Pod to pod and pod to service stay on the bridge; anything else from a pod is dropped.
    _run(["iptables", "-w", "-A", FORWARD_CHAIN, "-s", POD_CIDR, "-o", BRIDGE, "-j", "RETURN"])
    _run(["iptables", "-w", "-A", FORWARD_CHAIN, "-s", POD_CIDR, "-j", "DROP"])
    _run(["iptables", "-w", "-A", FORWARD_CHAIN, "-d", POD_CIDR, "!", "-i", BRIDGE, "-j", "DROP"])
    if _run(["iptables", "-w", "-C", "FORWARD", "-j", FORWARD_CHAIN], check=False).returncode != 0:
        _run(["iptables", "-w", "-I", "FORWARD", "1", "-j", FORWARD_CHAIN])


def route_of(address: str) -> str:
    """`ip route get`: which device a packet to `address` leaves by (tests check it is the bridge)."""
    return _run(["ip", "route", "get", address]).stdout.strip()


# --- configuration files ------------------------------------------------------------------------


def containerd_config(paths: NodePaths) -> str:
    return f"""version = 2
root = "{paths.image_store / "root"}"
state = "{paths.run / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{paths.containerd_socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths.image_store / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_REFERENCE}"
  # The sandbox may not lower oom_score_adj (no CAP_SYS_RESOURCE): without this runc cannot start.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGINS}"
    conf_dir = "{paths.cni_config}"
    max_conf_num = 1
"""


def cni_config(paths: NodePaths, service_cidr: str) -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": "ballast",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # nothing leaves this machine: no NAT to the outside
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": HOST_ADDRESS}]],
                    # No default route: a pod reaches its bridge and the services, nothing else.
                    "routes": [{"dst": service_cidr}],
                    "dataDir": str(paths.cni_ipam),
                },
            },
            {"type": "loopback"},
        ],
    }


def kubelet_config(paths: NodePaths, ca: Path, serving: tuple[Path, Path], port: int, healthz_port: int) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": HOST_ADDRESS,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(serving[0]),
        "tlsPrivateKeyFile": str(serving[1]),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        # Every caller is authorized by the apiserver (a SubjectAccessReview on nodes/proxy, logs...):
        # any certificate of the cluster's CA authenticates, and a person's must not reach pods by it.
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "localStorageCapacityIsolation": False,
        "failSwapOn": False,
        "staticPodPath": "",
        "podLogsDir": str(paths.pod_logs),
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi"},
        "resolvConf": "",
        "registerNode": True,
    }


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "bindAddress": HOST_ADDRESS,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        # Service traffic between two pods of the bridge returns through the host (no br_netfilter here).
        "iptables": {"masqueradeAll": True},
        "conntrack": {"maxPerCore": 0},  # leave the host's conntrack sysctls alone
        "nodePortAddresses": [f"{HOST_ADDRESS}/32"],
    }


# --- images -------------------------------------------------------------------------------------


def pause_archive() -> Path:
    """An OCI image with nothing but the pause binary, for the sandbox containers (built once)."""
    binary = build.binary("pause")
    archive = build.cache_dir() / "images" / f"pause-{binary.name.split('-')[-1]}.oci.tar"
    if archive.exists():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archive.parent) as scratch:
        rootfs, layout = Path(scratch) / "rootfs", Path(scratch) / "layout"
        rootfs.mkdir()
        shutil.copy2(binary, rootfs / "pause")
        image = f"{layout}:1"
        for argv in (
            ["umoci", "init", "--layout", str(layout)],
            ["umoci", "new", "--image", image],
            ["umoci", "insert", "--image", image, str(rootfs), "/"],
            ["umoci", "config", "--image", image, "--config.entrypoint=/pause", "--config.user=65535"],
            ["umoci", "gc", "--layout", str(layout)],
        ):
            _run(argv)
        index = json.loads((layout / "index.json").read_text())
        for manifest in index["manifests"]:
            manifest.setdefault("annotations", {})["io.containerd.image.name"] = PAUSE_REFERENCE
        (layout / "index.json").write_text(json.dumps(index))
        partial = archive.with_suffix(".partial")
        _run(["tar", "-C", str(layout), "-cf", str(partial), "oci-layout", "index.json", "blobs"])
        partial.replace(archive)
    return archive


def ctr(paths: NodePaths, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["ctr", "--address", str(paths.containerd_socket), "--namespace", "k8s.io", *args], check=check)


def archive_image(archive: Path) -> tuple[str, str]:
    """(reference, manifest digest) of an OCI archive, from its index (the tar's second member)."""
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.name.lstrip("./") == "index.json":
                stream = tar.extractfile(member)
                assert stream is not None
                manifest = json.load(stream)["manifests"][0]
                return manifest["annotations"]["io.containerd.image.name"], manifest["digest"]
    raise ValueError(f"{archive}: no index.json")


def import_image(paths: NodePaths, archive: Path) -> bool:
    """Into containerd's CRI namespace, unpacked for its snapshotter: the kubelet never pulls.
    An image the store already holds at that digest is not imported again (False)."""
    reference, digest = archive_image(archive)
    listed = ctr(paths, "images", "list", f"name=={reference}").stdout.splitlines()[1:]
    if any(line.split()[:1] == [reference] and digest in line.split() for line in listed):
        return False
    ctr(paths, "images", "import", str(archive))
    return True


def imported_images(paths: NodePaths) -> list[str]:
    return ctr(paths, "images", "list", "--quiet").stdout.split()


# --- stop and sweep -----------------------------------------------------------------------------


def _mounts_under(root: Path) -> list[str]:
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target == str(root) or target.startswith(str(root) + "/"):
            mounts.append(target)
    return sorted(mounts, key=len, reverse=True)  # innermost first


def _network_namespaces_of_pods(paths: NodePaths) -> list[str]:
    """containerd names pod network namespaces cni-<uuid> under /run/netns."""
    netns = Path("/run/netns")
    if not netns.exists():
        return []
    return sorted(entry.name for entry in netns.iterdir() if entry.name.startswith("cni-"))


def remove_containers(paths: NodePaths) -> None:
    """Every container in the store, running or not (pods the kubelet stopped but did not yet
    collect, or could not stop), with its snapshot and the CRI plugin's files for it: the next
    cluster's kubelet must find no pod of this one."""
    if not paths.containerd_socket.exists():
        return
    tasks = ctr(paths, "tasks", "list", "--quiet", check=False).stdout.split()
    for task in tasks:
        ctr(paths, "tasks", "kill", "--all", "--signal", "SIGKILL", task, check=False)
    deadline = time.monotonic() + 10
    for task in tasks:
        while time.monotonic() < deadline and ctr(paths, "tasks", "delete", task, check=False).returncode != 0:
            time.sleep(0.2)
    for container in ctr(paths, "containers", "list", "--quiet", check=False).stdout.split():
        ctr(paths, "containers", "delete", container, check=False)
    for kind in ("sandboxes", "containers"):
        shutil.rmtree(paths.image_store / "root" / "io.containerd.grpc.v1.cri" / kind, ignore_errors=True)


def _shim_pids(paths: NodePaths) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "containerd-shim" in cmdline and str(paths.containerd_socket) in cmdline:
                pids.append(int(proc.name))
    return pids


def sweep(paths: NodePaths, service_cidr: str, log: Callable[[str], None]) -> list[str]:
    """Remove what the node's processes leave behind; return what could not be removed."""
    for pid in _shim_pids(paths):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    kube_proxy = build.binary("kube-proxy")
    if kube_proxy.exists():  # its KUBE-* chains in every table
        _run([str(kube_proxy), "--cleanup", "--v=0"], check=False)
    for name in _network_namespaces_of_pods(paths):
        _run(["ip", "netns", "delete", name], check=False)
    for root in (paths.state, paths.run, paths.kubelet_root, paths.image_store):
        for target in _mounts_under(root):
            if _run(["umount", target], check=False).returncode != 0:
                _run(["umount", "--lazy", target], check=False)
    links = _run(["ip", "-o", "link", "show", "master", BRIDGE], check=False).stdout
    for line in links.splitlines():
        veth = line.split(":")[1].strip().split("@")[0]
        _run(["ip", "link", "delete", veth], check=False)
    _run(["ip", "route", "delete", service_cidr, "dev", BRIDGE], check=False)
    _run(["ip", "link", "delete", BRIDGE], check=False)
    if _run(["iptables", "-w", "-C", "FORWARD", "-j", FORWARD_CHAIN], check=False).returncode == 0:
        _run(["iptables", "-w", "-D", "FORWARD", "-j", FORWARD_CHAIN])
    _run(["iptables", "-w", "-F", FORWARD_CHAIN], check=False)
    _run(["iptables", "-w", "-X", FORWARD_CHAIN], check=False)
    for command in IPTABLES:
        for table in TABLES:
            _remove_kubernetes_chains(command, table)
    shutil.rmtree(paths.run, ignore_errors=True)
    if CLAIM.exists() and CLAIM.read_text().strip() == str(paths.state.parent):
        CLAIM.unlink()
    if not _mounts_under(paths.kubelet_root):  # pod volumes: never reused
        shutil.rmtree(paths.kubelet_root.parent, ignore_errors=True)
    return leftovers(paths)


def _remove_kubernetes_chains(command: str, table: str) -> None:
    """The kubelet's own chains (KUBE-FIREWALL, the canaries), which kube-proxy's cleanup keeps:
    first the jumps to them from the built-in chains, then the chains."""
    rules = _run([command, "-w", "-t", table, "-S"], check=False).stdout.splitlines()
    for rule in rules:
        parts = rule.split()
        if parts[:1] == ["-A"] and not parts[1].startswith("KUBE-") and "KUBE-" in rule:
            _run([command, "-w", "-t", table, "-D", *parts[1:]], check=False)
    chains = [rule.split()[1] for rule in rules if rule.startswith("-N KUBE-")]
    for chain in chains:
        _run([command, "-w", "-t", table, "-F", chain], check=False)
    for chain in chains:
        _run([command, "-w", "-t", table, "-X", chain], check=False)


def leftovers(paths: NodePaths) -> list[str]:
    """What a clean `down` must not leave: mounts, namespaces, links, chains, shims."""
    found = [
        f"mount {target}"
        for root in (paths.state, paths.run, paths.kubelet_root, paths.image_store)
        for target in _mounts_under(root)
    ]
    found += [f"network namespace {name}" for name in _network_namespaces_of_pods(paths)]
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode == 0:
        found.append(f"link {BRIDGE}")
    found += [
        f"link {line.split(':')[1].strip()}"
        for line in _run(["ip", "-o", "link"]).stdout.splitlines()
        if "veth" in line
    ]
    for command in IPTABLES:
        for table in TABLES:
            rules = _run([command, "-w", "-t", table, "-S"], check=False).stdout.splitlines()
            found += [f"{command} {table}: {rule}" for rule in rules if any(mark in rule for mark in OUR_CHAINS)]
    found += [f"containerd shim pid {pid}" for pid in _shim_pids(paths)]
    return found
