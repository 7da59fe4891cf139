"""Start and stop the local cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
the Ballast node agent and MinIO, all on loopback with free ports, all state under one directory.

`up` records every process it starts (pid, process group, port) in `<state>/cluster.json`; `down`
stops exactly those, by pid, and checks that their ports are free again.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ballast_dev.cluster import build, kubeletnode, pki

SERVICE_CIDR = "10.0.0.0/24"
# Handles of the processes this Python process started: kept so they are reaped on `down` instead
# of being garbage-collected while running (which warns, and leaves zombies behind).
_children: dict[int, subprocess.Popen] = {}
DEFAULT_NODE = "ballast-node"


def default_state_dir() -> Path:
    return Path(os.environ.get("BALLAST_CLUSTER_DIR", Path.home() / ".local" / "state" / "ballast" / "cluster"))


@dataclass
class Process:
    name: str
    pid: int
    ports: list[int]
    log: str
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # extra variables only (cluster.json is 0600)


@dataclass
class ClusterInfo:
    state_dir: str
    apiserver_url: str
    kubeconfig: str
    minio_endpoint: str
    minio_access_key: str
    minio_secret_key: str
    node_name: str
    processes: list[Process] = field(default_factory=list)
    # "agent": Ballast's node agent runs pods as host processes (fast). "kubelet": a real kubelet
    # on containerd and runc runs them from the images (kubeletnode.py).
    node_kind: str = "agent"

    def env(self) -> dict[str, str]:
        """What a shell, a test or the demo needs to reach the cluster."""
        return {
            "KUBECONFIG": self.kubeconfig,
            "BALLAST_CLUSTER_DIR": self.state_dir,
            "BALLAST_S3_ENDPOINT": self.minio_endpoint,
            "BALLAST_S3_SECURE": "false",  # the local MinIO speaks plain HTTP
            "BALLAST_S3_ACCESS_KEY": self.minio_access_key,
            "BALLAST_S3_SECRET_KEY": self.minio_secret_key,
        }


def _state_file(state_dir: Path) -> Path:
    return state_dir / "cluster.json"


def load(state_dir: Path | None = None) -> ClusterInfo | None:
    path = _state_file(state_dir or default_state_dir())
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    raw["processes"] = [Process(**p) for p in raw["processes"]]
    return ClusterInfo(**raw)


def _save(info: ClusterInfo) -> None:
    path = _state_file(Path(info.state_dir))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info), indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free loopback port *below* the kernel's ephemeral range.

    Port 0 would hand out an ephemeral port, which the kernel may give to some process's outgoing
    connection before our server binds it ("address already in use"); ports below that range
    are only ever taken by servers.
    """
    low, _ = _ephemeral_range()
    for _ in range(200):
        port = random.randrange(10000, max(10001, low))
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); look at its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _wait(what: str, check: Callable[[], bool], timeout: float, proc: subprocess.Popen | None, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting; log {log}:\n{tail}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s; log {log}:\n{tail}")


def _https_ok(url: str, ca: Path, cert: tuple[Path, Path] | None = None) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    if cert:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    with urllib.request.urlopen(url, context=context, timeout=2) as response:
        return bool(response.status == 200)


def _https_ok_unverified(url: str) -> bool:
    # The controller-manager and scheduler serve /healthz with their own self-signed certificates.
    context = ssl._create_unverified_context()
    with urllib.request.urlopen(url, context=context, timeout=2) as response:
        return bool(response.status == 200)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def _kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> None:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "ballast", "cluster": {"server": server, "certificate-authority": str(ca)}}],
                "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
                "contexts": [{"name": "ballast", "context": {"cluster": "ballast", "user": user}}],
                "current-context": "ballast",
            },
            indent=2,
        )
    )
    path.chmod(0o600)


def user_kubeconfig(info: ClusterInfo, user: str, groups: tuple[str, ...] = ()) -> Path:
    """A kubeconfig for a person of the local cluster, authenticated by a client certificate from
    its CA (CN = user, O = groups): a real identity for RBAC and admission, not impersonation."""
    state = Path(info.state_dir)
    certs = state / "pki"
    name = "user-" + "".join(ch if ch.isalnum() else "-" for ch in user)
    cert, key = pki.CertificateAuthority(certs).issue(name, user, groups=groups)
    path = state / "users" / f"{name}.kubeconfig"
    path.parent.mkdir(parents=True, exist_ok=True)
    _kubeconfig(path, info.apiserver_url, certs / "ca.crt", cert, key, user)
    return path


def token_kubeconfig(info: ClusterInfo, name: str, token: str) -> Path:
    """A kubeconfig that authenticates with a bearer token (a ServiceAccount's, from TokenRequest)."""
    state = Path(info.state_dir)
    path = state / "users" / f"{name}.kubeconfig"
    path.parent.mkdir(parents=True, exist_ok=True)
    server = {"server": info.apiserver_url, "certificate-authority": str(state / "pki" / "ca.crt")}
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "ballast", "cluster": server}],
                "users": [{"name": name, "user": {"token": token}}],
                "contexts": [{"name": "ballast", "context": {"cluster": "ballast", "user": name}}],
                "current-context": "ballast",
            }
        )
    )
    path.chmod(0o600)
    return path


def up(
    state_dir: Path | None = None,
    *,
    node_name: str = DEFAULT_NODE,
    capacity: dict[str, str] | None = None,
    with_minio: bool = True,
    path_prefix: str = "",
    node_kind: str = "agent",
    log: Callable[[str], None] = print,
) -> ClusterInfo:
    """Start the whole plane (building missing binaries first). Reuses a running one.

    A port taken between choosing and binding it fails one start; the next try picks new ports.
    """
    for attempt in range(3):
        try:
            return _up_once(
                state_dir,
                node_name=node_name,
                capacity=capacity,
                with_minio=with_minio,
                path_prefix=path_prefix,
                node_kind=node_kind,
                log=log,
            )
        except RuntimeError as error:
            if "address already in use" not in str(error) or attempt == 2:
                raise
            log(f"a port was taken while starting ({error.args[0].splitlines()[0]}); retrying")
    raise AssertionError("unreachable")


def _up_once(
    state_dir: Path | None,
    *,
    node_name: str,
    capacity: dict[str, str] | None,
    with_minio: bool,
    path_prefix: str,
    node_kind: str,
    log: Callable[[str], None],
) -> ClusterInfo:
    if node_kind not in ("agent", "kubelet"):
        raise ValueError(f"node kind {node_kind!r}: choose agent or kubelet")
    real_node = node_kind == "kubelet"
    if real_node and (missing := kubeletnode.missing_requirements()):
        raise RuntimeError(
            f"the kubelet node needs {', '.join(missing)}; install Debian's {kubeletnode.RUNTIME_PACKAGES}"
            " (scripts/setup does) and run as root"
        )
    state = (state_dir or default_state_dir()).resolve()
    existing = load(state)
    if existing and all(is_alive(p.pid) for p in existing.processes):
        log(f"cluster already up ({state})")
        return existing
    if existing:
        down(state, log=log)
    started = time.monotonic()
    if build.missing():
        log(f"building {', '.join(build.missing())} (first run only) ...")
        build.build_all()
    state.mkdir(parents=True, exist_ok=True)
    # Where the apiserver and MinIO listen: loopback, or the bridge's host address pods can reach.
    host = "127.0.0.1"
    if real_node:
        kubeletnode.claim(kubeletnode.NodePaths.of(state), _is_up)
        kubeletnode.prepare_network(SERVICE_CIDR)
        host = kubeletnode.HOST_ADDRESS
    logs = state / "logs"
    logs.mkdir(exist_ok=True)
    certs = state / "pki"
    ca = pki.CertificateAuthority(certs)
    serving = ca.issue(
        "apiserver",
        "kube-apiserver",
        # The service's first address is the `kubernetes` Service pods reach it by.
        server_ips=("127.0.0.1", kubeletnode.HOST_ADDRESS, SERVICE_CIDR.rsplit(".", 1)[0] + ".1"),
        server_dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
    )
    admin = ca.issue("admin", "ballast-admin", groups=("system:masters",))
    controller = ca.issue("controller-manager", "system:kube-controller-manager", groups=("system:masters",))
    scheduler = ca.issue("scheduler", "system:kube-scheduler", groups=("system:masters",))
    sa_private, sa_public = pki.service_account_keys(certs)

    etcd_client, etcd_peer, api_port = free_port(), free_port(), free_port()
    cm_port, sched_port = free_port(), free_port()
    server = f"https://{host}:{api_port}"
    kubeconfig = state / "kubeconfig"
    _kubeconfig(kubeconfig, server, ca.cert_path, *admin, "ballast-admin")
    _kubeconfig(state / "controller-manager.kubeconfig", server, ca.cert_path, *controller, "controller-manager")
    _kubeconfig(state / "scheduler.kubeconfig", server, ca.cert_path, *scheduler, "scheduler")

    info = ClusterInfo(
        state_dir=str(state),
        apiserver_url=server,
        kubeconfig=str(kubeconfig),
        minio_endpoint="",
        minio_access_key="",
        minio_secret_key="",
        node_name=node_name,
        node_kind=node_kind,
    )

    def start(name: str, argv: list[str], ports: list[int], env: dict[str, str] | None = None) -> subprocess.Popen:
        log_path = logs / f"{name}.log"
        proc = _spawn(argv, log_path, env or {}, state)
        info.processes.append(Process(name, proc.pid, ports, str(log_path), argv, env or {}))
        _save(info)
        return proc

    try:
        etcd = start(
            "etcd",
            [
                str(build.binary("etcd")),
                "--name=ballast",
                f"--data-dir={state / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=ballast=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=4294967296",
            ],
            [etcd_client, etcd_peer],
        )
        _wait("etcd", lambda: _http_ok(f"http://127.0.0.1:{etcd_client}/health"), 60, etcd, logs / "etcd.log")
        apiserver = start(
            "kube-apiserver",
            [
                str(build.binary("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                f"--bind-address={host}",
                f"--advertise-address={host}",
                f"--secure-port={api_port}",
                f"--cert-dir={certs}",
                f"--tls-cert-file={serving[0]}",
                f"--tls-private-key-file={serving[1]}",
                f"--client-ca-file={ca.cert_path}",
                # The real kubelet's identity is authorized by the Node authorizer.
                f"--authorization-mode={'Node,RBAC' if real_node else 'RBAC'}",
                f"--service-account-issuer={server}",
                f"--service-account-key-file={sa_public}",
                f"--service-account-signing-key-file={sa_private}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                *(_real_node_apiserver_flags(ca) if real_node else ["--endpoint-reconciler-type=none"]),
                "--v=1",
            ],
            [api_port],
        )
        ca_file = ca.cert_path
        _wait(
            "kube-apiserver",
            lambda: _https_ok(f"{server}/readyz", ca_file, admin),
            120,
            apiserver,
            logs / "kube-apiserver.log",
        )
        controller_manager = start(
            "kube-controller-manager",
            [
                str(build.binary("kube-controller-manager")),
                f"--kubeconfig={state / 'controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={state / 'controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={state / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={cm_port}",
                f"--cert-dir={state / 'controller-manager-certs'}",
                "--leader-elect=false",
                f"--service-account-private-key-file={sa_private}",
                f"--root-ca-file={ca.cert_path}",
                f"--cluster-signing-cert-file={ca.cert_path}",
                f"--cluster-signing-key-file={ca.key_path}",
                "--use-service-account-credentials=false",
                "--controllers=*",
                # The node agent renews its Lease every 10 s; be patient with a busy 2-core machine.
                "--node-monitor-grace-period=60s",
                "--concurrent-gc-syncs=5",
                "--v=1",
            ],
            [cm_port],
        )
        scheduler_proc = start(
            "kube-scheduler",
            [
                str(build.binary("kube-scheduler")),
                f"--kubeconfig={state / 'scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={state / 'scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={state / 'scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                f"--cert-dir={state / 'scheduler-certs'}",
                "--leader-elect=false",
                "--v=1",
            ],
            [sched_port],
        )
        if real_node:
            node_paths = kubeletnode.NodePaths.of(state)
            node_processes = _start_kubelet_node(node_paths, ca, server, node_name, start, logs, log)
        agent_args = [
            sys.executable,
            "-m",
            "ballast_dev.cluster.nodeagent",
            f"--kubeconfig={kubeconfig}",
            f"--state-dir={state / 'node'}",
            f"--node-name={node_name}",
            f"--apiserver-port={api_port}",
        ]
        for resource, amount in (capacity or {}).items():
            agent_args.append(f"--capacity={resource}={amount}")
        if path_prefix:
            agent_args.append(f"--path-prefix={path_prefix}")
        agent = None if real_node else start("node-agent", agent_args, [])
        if with_minio:
            minio_port, console_port = free_port(), free_port()
            info.minio_endpoint = f"{host}:{minio_port}"
            info.minio_access_key = "ballast-" + secrets.token_hex(4)
            info.minio_secret_key = secrets.token_urlsafe(24)
            minio = start(
                "minio",
                [
                    str(build.binary("minio")),
                    "server",
                    "--quiet",
                    "--address",
                    info.minio_endpoint,
                    "--console-address",
                    f"127.0.0.1:{console_port}",
                    str(state / "minio"),
                ],
                [minio_port, console_port],
                env={
                    "MINIO_ROOT_USER": info.minio_access_key,
                    "MINIO_ROOT_PASSWORD": info.minio_secret_key,
                    "MINIO_BROWSER": "off",
                    "MINIO_UPDATE": "off",
                    "MINIO_CI_CD": "on",
                },
            )
        _wait(
            "kube-controller-manager",
            lambda: _https_ok_unverified(f"https://127.0.0.1:{cm_port}/healthz"),
            60,
            controller_manager,
            logs / "kube-controller-manager.log",
        )
        _wait(
            "kube-scheduler",
            lambda: _https_ok_unverified(f"https://127.0.0.1:{sched_port}/healthz"),
            60,
            scheduler_proc,
            logs / "kube-scheduler.log",
        )
        if with_minio:
            _wait(
                "minio",
                lambda: _http_ok(f"http://{info.minio_endpoint}/minio/health/ready"),
                60,
                minio,
                logs / "minio.log",
            )
        if real_node:
            _wait_for_kubelet_node(info, node_processes, capacity or {}, logs)
        else:
            ready_flag = state / "node" / "ready"
            _wait("node agent", ready_flag.exists, 60, agent, logs / "node-agent.log")
        _save(info)
    except BaseException:
        down(state, log=log)
        raise
    log(f"cluster up in {time.monotonic() - started:.1f} s ({state})")
    return info


def _is_up(state: Path) -> bool:
    info = load(state)
    return info is not None and any(is_alive(p.pid) for p in info.processes)


def _real_node_apiserver_flags(ca: pki.CertificateAuthority) -> list[str]:
    """The apiserver reaches the kubelet (logs, exec) at its InternalIP, verifying its serving
    certificate, with a client certificate of the cluster's CA."""
    # The kubelet authorizes every caller with the apiserver (Webhook), this one included: the
    # apiserver's own identity, as kubeadm issued it.
    client_cert, client_key = ca.issue(
        "apiserver-kubelet-client", "kube-apiserver-kubelet-client", groups=("system:masters",)
    )
    return [
        "--enable-admission-plugins=NodeRestriction",
        f"--kubelet-certificate-authority={ca.cert_path}",
        f"--kubelet-client-certificate={client_cert}",
        f"--kubelet-client-key={client_key}",
        "--kubelet-preferred-address-types=InternalIP",
    ]


@dataclass(frozen=True)
class NodeProcesses:
    kubelet: subprocess.Popen
    kube_proxy: subprocess.Popen
    kubelet_healthz_port: int
    proxy_healthz_port: int


def _start_kubelet_node(
    paths: kubeletnode.NodePaths,
    ca: pki.CertificateAuthority,
    server: str,
    node_name: str,
    start: Callable[..., subprocess.Popen],
    logs: Path,
    log: Callable[[str], None],
) -> NodeProcesses:
    """containerd (with every built image imported), then the kubelet and kube-proxy."""
    from ballast_dev.images import build as images

    for folder in (paths.state, paths.run, paths.cni_config, paths.cni_ipam, paths.kubelet_root, paths.pod_logs):
        folder.mkdir(parents=True, exist_ok=True)
    (paths.state / "containerd.toml").write_text(kubeletnode.containerd_config(paths))
    (paths.cni_config / "10-ballast.conflist").write_text(
        json.dumps(kubeletnode.cni_config(paths, SERVICE_CIDR), indent=2)
    )
    containerd = start("containerd", ["containerd", f"--config={paths.state / 'containerd.toml'}"], [])
    _wait("containerd", paths.containerd_socket.exists, 60, containerd, logs / "containerd.log")
    _wait(
        "containerd",
        lambda: kubeletnode.ctr(paths, "version", check=False).returncode == 0,
        30,
        containerd,
        logs / "containerd.log",
    )
    archives = [kubeletnode.pause_archive()]
    built = [image for image in (images.built(name) for name in images.recipes.RECIPES) if image]
    archives += [Path(image.archive) for image in built]
    if not built:
        log("no image built yet (scripts/build-images): pods can run only images already imported")
    kubeletnode.remove_containers(paths)  # any a crashed cluster left in the shared store
    for archive in archives:
        started = time.monotonic()
        if kubeletnode.import_image(paths, archive):
            log(f"imported {archive.name} in {time.monotonic() - started:.1f} s")

    state = paths.state
    node_cert = ca.issue("kubelet", f"system:node:{node_name}", groups=("system:nodes",))
    _kubeconfig(state / "kubelet.kubeconfig", server, ca.cert_path, *node_cert, f"system:node:{node_name}")
    serving = ca.issue("kubelet-serving", f"system:node:{node_name}", server_ips=(kubeletnode.HOST_ADDRESS,))
    kubelet_port, kubelet_healthz = free_port(), free_port()
    config = kubeletnode.kubelet_config(paths, ca.cert_path, serving, kubelet_port, kubelet_healthz)
    (state / "kubelet.json").write_text(json.dumps(config, indent=2))
    kubelet = start(
        "kubelet",
        [
            str(build.binary("kubelet")),
            f"--config={state / 'kubelet.json'}",
            f"--kubeconfig={state / 'kubelet.kubeconfig'}",
            f"--root-dir={paths.kubelet_root}",
            f"--cert-dir={state / 'kubelet-certs'}",
            f"--hostname-override={node_name}",
            f"--node-ip={kubeletnode.HOST_ADDRESS}",
            "--v=1",
        ],
        [kubelet_healthz],
    )
    proxy_cert = ca.issue("kube-proxy", "system:kube-proxy")
    _kubeconfig(state / "kube-proxy.kubeconfig", server, ca.cert_path, *proxy_cert, "system:kube-proxy")
    proxy_healthz, proxy_metrics = free_port(), free_port()
    proxy_config = kubeletnode.kube_proxy_config(state / "kube-proxy.kubeconfig", proxy_healthz, proxy_metrics)
    (state / "kube-proxy.json").write_text(json.dumps(proxy_config, indent=2))
    kube_proxy = start(
        "kube-proxy",
        [
            str(build.binary("kube-proxy")),
            f"--config={state / 'kube-proxy.json'}",
            f"--hostname-override={node_name}",
            "--v=1",
        ],
        [proxy_healthz, proxy_metrics],
    )
    return NodeProcesses(kubelet, kube_proxy, kubelet_healthz, proxy_healthz)


def _admin_tls(info: ClusterInfo) -> ssl.SSLContext:
    certs = Path(info.state_dir) / "pki"
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    context.load_cert_chain(str(certs / "admin.crt"), str(certs / "admin.key"))
    return context


def _node_ready(info: ClusterInfo) -> bool:
    url = f"{info.apiserver_url}/api/v1/nodes/{info.node_name}"
    with urllib.request.urlopen(url, context=_admin_tls(info), timeout=2) as response:
        node = json.loads(response.read())
    conditions = node.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _advertise(info: ClusterInfo, capacity: dict[str, str]) -> None:
    """Extended resources (the GPU count) are advertised by patching the node's status, as a
    device plugin would; the kubelet keeps them."""
    if not capacity:
        return
    body = json.dumps({"status": {"capacity": capacity}}).encode()
    request = urllib.request.Request(
        f"{info.apiserver_url}/api/v1/nodes/{info.node_name}/status",
        data=body,
        method="PATCH",
        headers={"Content-Type": "application/merge-patch+json"},
    )
    with urllib.request.urlopen(request, context=_admin_tls(info), timeout=5):
        pass


def _wait_for_kubelet_node(info: ClusterInfo, node: NodeProcesses, capacity: dict[str, str], logs: Path) -> None:
    kubelet_healthz = f"http://127.0.0.1:{node.kubelet_healthz_port}/healthz"
    _wait("kubelet", lambda: _http_ok(kubelet_healthz), 90, node.kubelet, logs / "kubelet.log")
    proxy_healthz = f"http://127.0.0.1:{node.proxy_healthz_port}/healthz"
    _wait("kube-proxy", lambda: _http_ok(proxy_healthz), 60, node.kube_proxy, logs / "kube-proxy.log")
    _wait("kubelet node Ready", lambda: _node_ready(info), 120, node.kubelet, logs / "kubelet.log")
    _advertise(info, capacity)


def _drain_kubelet_node(info: ClusterInfo, log: Callable[[str], None]) -> None:
    """Before the kubelet stops: no controller may recreate pods, and the kubelet stops every pod
    it runs (tearing its sandbox and network down through CNI)."""
    for process in info.processes:
        if process.name in ("kube-controller-manager", "kube-scheduler"):
            _stop(process, grace=10)
    kubectl = [str(build.binary("kubectl")), f"--kubeconfig={info.kubeconfig}"]
    listed = subprocess.run(
        [*kubectl, "get", "pods", "--all-namespaces", "--no-headers", "-o", "custom-columns=N:.metadata.namespace"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    for namespace in sorted(set(listed.stdout.split())):
        subprocess.run(
            [*kubectl, "delete", "pods", "--all", "-n", namespace, "--grace-period=2", "--wait=false"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = subprocess.run(
            [*kubectl, "get", "pods", "--all-namespaces", "--no-headers"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if left.returncode != 0 or not left.stdout.strip():
            return
        time.sleep(1)
    log("some pods did not stop within 60 s; their containers are killed")


def _spawn(argv: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: `down` stops it and its children
            env={**os.environ, **env},
            cwd=cwd,
        )
    _children[proc.pid] = proc
    return proc


def kill(state_dir: Path, name: str, sig: int = signal.SIGKILL) -> None:
    """Kill one component of a running plane (fault-injection tests), leaving the others up."""
    info = load(state_dir)
    assert info is not None, f"no cluster in {state_dir}"
    process = next(p for p in info.processes if p.name == name)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    deadline = time.monotonic() + 10
    while is_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    _reap(process.pid)


def restart(state_dir: Path, name: str) -> None:
    """Start a killed component again with its recorded command line (same ports, same data)."""
    info = load(state_dir)
    assert info is not None, f"no cluster in {state_dir}"
    process = next(p for p in info.processes if p.name == name)
    if is_alive(process.pid):
        kill(state_dir, name)
    fresh = _spawn(process.argv, Path(process.log), process.env, Path(info.state_dir))
    process.pid = fresh.pid
    _save(info)


def _stop(process: Process, grace: float) -> None:
    if not is_alive(process.pid):
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and is_alive(process.pid):
        time.sleep(0.1)
    if is_alive(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    _reap(process.pid)


def _reap(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def down(state_dir: Path | None = None, *, log: Callable[[str], None] = print) -> list[str]:
    """Stop what `up` started, newest first; return problems left behind (empty when clean)."""
    state = (state_dir or default_state_dir()).resolve()
    info = load(state)
    if info is None:
        return []
    real_node = info.node_kind == "kubelet"
    paths = kubeletnode.NodePaths.of(state)
    if real_node:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _drain_kubelet_node(info, log)
        kubeletnode.remove_containers(paths)
    for process in reversed(info.processes):
        # The node agent stops its pods on SIGTERM; give it time to do so.
        _stop(process, grace=20 if process.name == "node-agent" else 10)
    # Pod processes a killed node agent could not stop are recorded under node/pids.
    pid_dir = state / "node" / "pids"
    if pid_dir.exists():
        for pid_file in pid_dir.glob("*.pid"):
            try:
                pid = int(pid_file.read_text().strip())
                os.killpg(pid, signal.SIGKILL)
            except (ValueError, ProcessLookupError, PermissionError):
                pass
            pid_file.unlink(missing_ok=True)
    problems = [f"{p.name} (pid {p.pid}) still running" for p in info.processes if is_alive(p.pid)]
    deadline = time.monotonic() + 10
    busy = [port for p in info.processes for port in p.ports]
    while busy and time.monotonic() < deadline:
        busy = [port for port in busy if port_open(port)]
        if busy:
            time.sleep(0.2)
    problems += [f"port {port} still open" for port in busy]
    if real_node:
        problems += kubeletnode.sweep(paths, SERVICE_CIDR, log)
    _state_file(state).unlink(missing_ok=True)
    log("cluster down" if not problems else "cluster down with problems: " + "; ".join(problems))
    return problems
