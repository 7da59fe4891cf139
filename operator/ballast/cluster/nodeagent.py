"""The Ballast node agent: a small stand-in for the kubelet that runs Pods as local processes.

It registers a Node (with configurable capacity, `nvidia.com/gpu` included so GPU Jobs schedule),
renews the node's Lease, watches the Pods bound to it and runs each container as a process:
command and args, env (value, secretKeyRef, configMapKeyRef, fieldRef, envFrom), workingDir, and
volumes (emptyDir, configMap, secret, projected service-account token, downwardAPI, hostPath)
bind-mounted at their mountPath inside a private mount namespace. It reports real Pod status, so
the real Job, ReplicaSet and Deployment controllers do the rest.

What differs from a kubelet, on purpose: images are not pulled (the command runs in the project's
environment, with its entrypoints on PATH); every pod gets its own loopback address (127.1.x.y) as
its pod IP but shares the host's network namespace; resources are not enforced; startup probes
are not run; service-account tokens are issued once per pod start and not refreshed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import logging
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("ballast.nodeagent")

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
LEASE_SECONDS = 40
RENEW_EVERY = 10.0
RESYNC_EVERY = 20.0
# Every call to the apiserver gives up after this long: a half-open connection must not freeze a pod.
API_TIMEOUT = 30
MAX_BACKOFF = 30.0


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined variables are replaced, `$$` escapes, others stay."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR.sub(replace, text)


@dataclass
class ContainerRun:
    spec: Any  # V1Container
    init: bool = False
    process: subprocess.Popen | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    exit_code: int | None = None
    restarts: int = 0
    ready: bool = False
    probe_successes: int = 0
    probe_failures: int = 0
    liveness_failures: int = 0
    next_probe: float = 0.0
    next_liveness: float = 0.0
    restart_at: float | None = None
    last_exit: dict[str, Any] | None = None
    waiting_reason: str | None = "ContainerCreating"
    waiting_message: str | None = None
    log_path: Path | None = None

    @property
    def name(self) -> str:
        return str(self.spec.name)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class PodWorker:
    agent: NodeAgent
    namespace: str
    name: str
    uid: str
    pod: Any
    pod_ip: str
    directory: Path
    containers: list[ContainerRun] = field(default_factory=list)
    init_containers: list[ContainerRun] = field(default_factory=list)
    stop_grace: float | None = None
    stop_requested_at: float | None = None
    killed: bool = False
    thread: threading.Thread | None = None
    last_status: dict[str, Any] | None = None
    failure: tuple[str, str] | None = None  # (reason, message) that fails the pod before it starts
    started_at: dt.datetime = field(default_factory=now)

    # ---- setup -------------------------------------------------------------------------------------
    def _volume_dirs(self) -> dict[str, Path]:
        api = self.agent.core
        dirs: dict[str, Path] = {}
        for volume in self.pod.spec.volumes or []:
            target = self.directory / "volumes" / volume.name
            target.mkdir(parents=True, exist_ok=True)
            if volume.host_path is not None:
                host = Path(volume.host_path.path)
                host.mkdir(parents=True, exist_ok=True)
                dirs[volume.name] = host
                continue
            if volume.config_map is not None:
                self._write_items(
                    target,
                    self._config_map(volume.config_map.name, volume.config_map.optional),
                    volume.config_map.items,
                )
            elif volume.secret is not None:
                self._write_items(
                    target, self._secret(volume.secret.secret_name, volume.secret.optional), volume.secret.items
                )
            elif volume.downward_api is not None:
                for item in volume.downward_api.items or []:
                    self._write(target / item.path, self._field(item.field_ref.field_path) if item.field_ref else "")
            elif volume.projected is not None:
                for source in volume.projected.sources or []:
                    if source.service_account_token is not None:
                        token = api.create_namespaced_service_account_token(
                            self.pod.spec.service_account_name or "default",
                            self.namespace,
                            client.AuthenticationV1TokenRequest(
                                spec=client.V1TokenRequestSpec(
                                    audiences=[source.service_account_token.audience]
                                    if source.service_account_token.audience
                                    else [],
                                    expiration_seconds=source.service_account_token.expiration_seconds or 3600,
                                    bound_object_ref=client.V1BoundObjectReference(
                                        kind="Pod", api_version="v1", name=self.name, uid=self.uid
                                    ),
                                )
                            ),
                        )
                        self._write(target / source.service_account_token.path, token.status.token)
                    elif source.config_map is not None:
                        data = self._config_map(source.config_map.name, source.config_map.optional)
                        self._write_items(target, data, source.config_map.items)
                    elif source.secret is not None:
                        self._write_items(
                            target, self._secret(source.secret.name, source.secret.optional), source.secret.items
                        )
                    elif source.downward_api is not None:
                        for item in source.downward_api.items or []:
                            value = self._field(item.field_ref.field_path) if item.field_ref else ""
                            self._write(target / item.path, value)
            # emptyDir (and anything unknown) is an empty directory.
            dirs[volume.name] = target
        return dirs

    @staticmethod
    def _write(path: Path, text: str | bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)

    def _write_items(self, target: Path, data: dict[str, bytes], items: Any) -> None:
        if items:
            for item in items:
                if item.key in data:
                    self._write(target / item.path, data[item.key])
        else:
            for key, value in data.items():
                self._write(target / key, value)

    def _config_map(self, name: str, optional: bool | None) -> dict[str, bytes]:
        try:
            cm = self.agent.core.read_namespaced_config_map(name, self.namespace, _request_timeout=API_TIMEOUT)
        except ApiException as error:
            if error.status == 404 and optional:
                return {}
            raise
        return {k: v.encode() for k, v in (cm.data or {}).items()}

    def _secret(self, name: str, optional: bool | None) -> dict[str, bytes]:
        import base64

        try:
            secret = self.agent.core.read_namespaced_secret(name, self.namespace, _request_timeout=API_TIMEOUT)
        except ApiException as error:
            if error.status == 404 and optional:
                return {}
            raise
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    def _field(self, path: str) -> str:
        meta = self.pod.metadata
        simple = {
            "metadata.name": meta.name,
            "metadata.namespace": meta.namespace,
            "metadata.uid": meta.uid,
            "spec.nodeName": self.agent.node_name,
            "spec.serviceAccountName": self.pod.spec.service_account_name or "default",
            "status.podIP": self.pod_ip,
            "status.podIPs": self.pod_ip,
            "status.hostIP": "127.0.0.1",
        }
        if path in simple:
            return str(simple[path])
        match = re.fullmatch(r"metadata\.(labels|annotations)(?:\['(.+)'\])?", path)
        if match:
            values = (meta.labels if match.group(1) == "labels" else meta.annotations) or {}
            if match.group(2):
                return str(values.get(match.group(2), ""))
            return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
        raise ValueError(f"unsupported fieldRef {path}")

    def _env(self, container: Any) -> dict[str, str]:
        env: dict[str, str] = {
            "PATH": f"{self.agent.path_prefix}:" * bool(self.agent.path_prefix)
            + f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(self.directory / "home"),
            "HOSTNAME": self.name,
            "LANG": "C.UTF-8",
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.agent.apiserver_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.agent.apiserver_port),
        }
        (self.directory / "home").mkdir(parents=True, exist_ok=True)
        for source in container.env_from or []:
            prefix = source.prefix or ""
            if source.config_map_ref is not None:
                data = self._config_map(source.config_map_ref.name, source.config_map_ref.optional)
            elif source.secret_ref is not None:
                data = self._secret(source.secret_ref.name, source.secret_ref.optional)
            else:
                continue
            env.update({prefix + k: v.decode() for k, v in data.items()})
        for var in container.env or []:
            if var.value_from is None:
                env[var.name] = expand(var.value or "", env)
                continue
            source = var.value_from
            if source.secret_key_ref is not None:
                data = self._secret(source.secret_key_ref.name, source.secret_key_ref.optional)
                if source.secret_key_ref.key not in data:
                    if source.secret_key_ref.optional:
                        continue
                    raise KeyError(f"secret {source.secret_key_ref.name} has no key {source.secret_key_ref.key}")
                env[var.name] = data[source.secret_key_ref.key].decode()
            elif source.config_map_key_ref is not None:
                data = self._config_map(source.config_map_key_ref.name, source.config_map_key_ref.optional)
                if source.config_map_key_ref.key not in data:
                    if source.config_map_key_ref.optional:
                        continue
                    raise KeyError(
                        f"configmap {source.config_map_key_ref.name} has no key {source.config_map_key_ref.key}"
                    )
                env[var.name] = data[source.config_map_key_ref.key].decode()
            elif source.field_ref is not None:
                env[var.name] = self._field(source.field_ref.field_path)
            elif source.resource_field_ref is not None:
                env[var.name] = "0"
        return env

    # ---- processes ----------------------------------------------------------------------------------
    def _start(self, run: ContainerRun, volumes: dict[str, Path]) -> None:
        spec = run.spec
        if not spec.command:
            raise ValueError(
                f"container {spec.name} has no command: the node agent does not pull images "
                "(image entrypoints are unknown here), so every container must set `command`"
            )
        env = self._env(spec)
        argv = [expand(part, env) for part in [*spec.command, *(spec.args or [])]]
        mounts = []
        for mount in spec.volume_mounts or []:
            if mount.name not in volumes:
                raise ValueError(f"container {spec.name} mounts unknown volume {mount.name}")
            host_dir = volumes[mount.name] / (mount.sub_path or "")
            if self.agent.would_hide_itself(mount.mount_path):
                # e.g. an emptyDir on /tmp while the project (its Python) lives under /tmp: mounting
                # it would hide the very program the container runs. The host path stays visible.
                log.info(
                    "%s/%s: not mounting %s at %s: it would hide %s",
                    self.namespace,
                    self.name,
                    mount.name,
                    mount.mount_path,
                    sys.prefix,
                )
                continue
            mounts.append((str(host_dir), mount.mount_path, bool(mount.read_only)))
        if mounts:
            # A private mount namespace per container: volumes appear at their mountPath without
            # touching what other processes on the machine see. A mount that would hide another's
            # source (an emptyDir on /tmp while the state directory lives under /tmp) goes last.
            sources = [(src, target) for src, target, _ in mounts]  # list.sort() empties the list meanwhile

            def hides_a_source(target: str) -> bool:
                return any(
                    other != target and (src + "/").startswith(target.rstrip("/") + "/") for src, other in sources
                )

            mounts.sort(key=lambda m: (hides_a_source(m[1]), m[1].count("/")))
            script = ["set -e"]
            for source, target, read_only in mounts:
                quoted_target = shlex.quote(target)
                script.append(
                    f"if [ -d {shlex.quote(source)} ]; then mkdir -p {quoted_target}; "
                    f'else mkdir -p "$(dirname {quoted_target})"; touch {quoted_target}; fi'
                )
                script.append(f"mount --bind {shlex.quote(source)} {quoted_target}")
                if read_only:
                    script.append(f"mount -o remount,ro,bind {quoted_target}")
            script.append('exec "$@"')
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script), spec.name, *argv]
        cwd = spec.working_dir or str(self.directory / "home")
        Path(cwd).mkdir(parents=True, exist_ok=True)
        logs = self.agent.log_dir
        run.log_path = logs / f"{self.namespace}_{self.name}_{spec.name}.log"
        with run.log_path.open("ab") as out:
            out.write(
                f"--- {iso(now())} starting {shlex.join(argv[-len(spec.command) - len(spec.args or []) :])}\n".encode()
            )
            out.flush()
            run.process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        (self.agent.pid_dir / f"{self.uid}_{spec.name}.pid").write_text(str(run.process.pid))
        run.started_at = now()
        run.finished_at = None
        run.exit_code = None
        run.ready = False
        run.probe_successes = run.probe_failures = run.liveness_failures = 0
        delay = (spec.readiness_probe.initial_delay_seconds or 0) if spec.readiness_probe else 0
        run.next_probe = time.monotonic() + delay
        live_delay = (spec.liveness_probe.initial_delay_seconds or 0) if spec.liveness_probe else 0
        run.next_liveness = time.monotonic() + live_delay
        run.waiting_reason = run.waiting_message = None
        run.restart_at = None

    def _signal(self, run: ContainerRun, sig: int) -> None:
        if run.process is not None and run.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.process.pid, sig)

    def _collect(self, run: ContainerRun) -> bool:
        """Record an exit; True when the container just stopped."""
        if run.process is None or run.exit_code is not None:
            return False
        code = run.process.poll()
        if code is None:
            return False
        run.exit_code = code if code >= 0 else 128 - code
        run.finished_at = now()
        run.ready = False
        (self.agent.pid_dir / f"{self.uid}_{run.name}.pid").unlink(missing_ok=True)
        return True

    # ---- probes ------------------------------------------------------------------------------------
    def _probe(self, probe: Any, env_container: Any) -> bool:
        timeout = probe.timeout_seconds or 1
        try:
            if probe.http_get is not None:
                port = self._port(probe.http_get.port, env_container)
                host = probe.http_get.host or self.pod_ip
                url = f"{(probe.http_get.scheme or 'HTTP').lower()}://{host}:{port}{probe.http_get.path or '/'}"
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    return 200 <= response.status < 400
            if probe.tcp_socket is not None:
                port = self._port(probe.tcp_socket.port, env_container)
                with socket.create_connection((probe.tcp_socket.host or self.pod_ip, port), timeout=timeout):
                    return True
            if probe.var_exec is not None:
                result = subprocess.run(
                    probe.var_exec.command,
                    env=self._env(env_container),
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                )
                return result.returncode == 0
        except (OSError, urllib.error.URLError, subprocess.TimeoutExpired, ValueError):
            return False
        return True

    @staticmethod
    def _port(port: int | str, container: Any) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for declared in container.ports or []:
            if declared.name == port:
                return int(declared.container_port)
        raise ValueError(f"no port named {port}")

    def _run_probes(self, run: ContainerRun) -> None:
        clock = time.monotonic()
        readiness = run.spec.readiness_probe
        if readiness is None:
            run.ready = run.running()
        elif run.running() and clock >= run.next_probe:
            run.next_probe = clock + (readiness.period_seconds or 10)
            if self._probe(readiness, run.spec):
                run.probe_successes += 1
                run.probe_failures = 0
                if run.probe_successes >= (readiness.success_threshold or 1):
                    run.ready = True
            else:
                run.probe_failures += 1
                run.probe_successes = 0
                if run.probe_failures >= (readiness.failure_threshold or 3):
                    run.ready = False
        liveness = run.spec.liveness_probe
        if liveness is not None and run.running() and clock >= run.next_liveness:
            run.next_liveness = clock + (liveness.period_seconds or 10)
            if self._probe(liveness, run.spec):
                run.liveness_failures = 0
            else:
                run.liveness_failures += 1
                if run.liveness_failures >= (liveness.failure_threshold or 3):
                    log.info("%s/%s: liveness probe failed, restarting %s", self.namespace, self.name, run.name)
                    self._signal(run, signal.SIGKILL)

    # ---- status ------------------------------------------------------------------------------------
    def _container_status(self, run: ContainerRun) -> dict[str, Any]:
        state: dict[str, Any]
        if run.running():
            state = {"running": {"startedAt": iso(run.started_at)}}
        elif run.exit_code is not None and run.restart_at is None:
            state = {"terminated": self._terminated(run)}
        else:
            state = {"waiting": {"reason": run.waiting_reason or "ContainerCreating"}}
            if run.waiting_message:
                state["waiting"]["message"] = run.waiting_message
        status: dict[str, Any] = {
            "name": run.name,
            "image": run.spec.image or "local",
            "imageID": "",
            "containerID": f"ballast://{run.process.pid}" if run.process else None,
            "ready": run.ready,
            "restartCount": run.restarts,
            "started": run.running(),
            "state": state,
        }
        if run.last_exit:
            status["lastState"] = {"terminated": run.last_exit}
        return status

    @staticmethod
    def _terminated(run: ContainerRun) -> dict[str, Any]:
        return {
            "exitCode": run.exit_code,
            "reason": "Completed" if run.exit_code == 0 else "Error",
            "startedAt": iso(run.started_at),
            "finishedAt": iso(run.finished_at),
            "containerID": f"ballast://{run.process.pid}" if run.process else None,
        }

    def _phase(self) -> str:
        if self.failure:
            return "Failed"
        if any(r.exit_code is None or r.restart_at is not None for r in self.init_containers):
            return "Pending"
        if not self.containers or any(r.process is None and r.restart_at is None for r in self.containers):
            return "Pending"
        if any(r.running() or r.restart_at is not None for r in self.containers):
            return "Running"
        if all(r.exit_code == 0 for r in self.containers):
            return "Succeeded"
        return "Failed"

    def report(self, force: bool = False) -> None:
        phase = self._phase()
        ready = phase == "Running" and all(r.ready for r in self.containers)
        initialized = all(r.exit_code == 0 for r in self.init_containers)
        stamp = iso(self.started_at)
        conditions = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            {"type": "Initialized", "status": str(initialized), "lastTransitionTime": stamp},
            {"type": "ContainersReady", "status": str(ready), "lastTransitionTime": stamp},
            {"type": "Ready", "status": str(ready), "lastTransitionTime": stamp},
        ]
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": stamp,
            "containerStatuses": [self._container_status(r) for r in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [self._container_status(r) for r in self.init_containers]
        if self.failure:
            status["reason"], status["message"] = self.failure
        comparable = {k: v for k, v in status.items() if k != "conditions"} | {
            "ready": ready,
            "initialized": initialized,
        }
        if not force and comparable == self.last_status:
            return
        # Keep transition times stable: only a change of status moves them.
        previous = {c["type"]: c for c in ((self.last_status or {}).get("_conditions") or [])}
        stamp_now = iso(now())
        for condition in conditions:
            old = previous.get(condition["type"])
            if old and old["status"] == condition["status"]:
                condition["lastTransitionTime"] = old["lastTransitionTime"]
            elif old:
                condition["lastTransitionTime"] = stamp_now
        try:
            self.agent.core.patch_namespaced_pod_status(
                self.name, self.namespace, {"status": status}, _request_timeout=API_TIMEOUT
            )
        except ApiException as error:
            if error.status == 404:
                return
            log.warning("%s/%s: status update failed: %s", self.namespace, self.name, error.reason)
            return
        except Exception as error:  # the apiserver is unreachable: keep running, report on the next change
            log.warning("%s/%s: status update failed: %s", self.namespace, self.name, type(error).__name__)
            return
        self.last_status = comparable | {"_conditions": conditions}

    # ---- lifecycle ---------------------------------------------------------------------------------
    def stop(self, grace: float) -> None:
        if self.stop_requested_at is None:
            self.stop_grace = grace
            self.stop_requested_at = time.monotonic()
            for run in self.init_containers + self.containers:
                self._signal(run, signal.SIGTERM)

    def kill(self) -> None:
        self.killed = True
        self.stop(0)

    def _restart_policy(self) -> str:
        return str(self.pod.spec.restart_policy or "Always")

    def _should_restart(self, run: ContainerRun) -> bool:
        policy = self._restart_policy()
        return policy == "Always" or (policy == "OnFailure" and run.exit_code != 0)

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("%s/%s: worker crashed", self.namespace, self.name)
            self.failure = ("NodeAgentError", "the node agent failed running this pod; see its log")
            for run in self.init_containers + self.containers:
                self._signal(run, signal.SIGKILL)
            self.report(force=True)
        finally:
            self.agent.forget(self.uid)

    def _run(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.init_containers = [ContainerRun(c, init=True) for c in self.pod.spec.init_containers or []]
        self.containers = [ContainerRun(c) for c in self.pod.spec.containers]
        self.report(force=True)
        try:
            volumes = self._volume_dirs()
        except (ApiException, KeyError, ValueError, OSError) as error:
            reason = error.reason if isinstance(error, ApiException) else str(error)
            self.failure = ("VolumeSetupFailed", f"could not prepare volumes: {reason}")
            self.report(force=True)
            return self._wait_for_deletion()
        for run in self.init_containers:
            if not self._run_to_completion(run, volumes):
                return self._wait_for_deletion()
        for run in self.containers:
            if not self._try_start(run, volumes):
                break
        self.report()
        while True:
            if self.stop_requested_at is not None:
                self._finish_stop()
                return
            for run in self.containers:
                if self._collect(run):
                    log.info("%s/%s: %s exited %s", self.namespace, self.name, run.name, run.exit_code)
                    if self._should_restart(run):
                        run.last_exit = self._terminated(run)
                        run.restarts += 1
                        backoff = min(MAX_BACKOFF, 2 ** min(run.restarts - 1, 5))
                        run.restart_at = time.monotonic() + backoff
                        run.waiting_reason = "CrashLoopBackOff" if run.exit_code else "Completed"
                        run.waiting_message = f"back-off {backoff:.0f}s restarting container {run.name}"
                if run.restart_at is not None and time.monotonic() >= run.restart_at:
                    self._try_start(run, volumes)
                self._run_probes(run)
            self.report()
            if self._phase() in ("Succeeded", "Failed"):
                return self._wait_for_deletion()
            time.sleep(0.25)

    def _try_start(self, run: ContainerRun, volumes: dict[str, Path]) -> bool:
        try:
            self._start(run, volumes)
            return True
        except (ApiException, KeyError, ValueError, OSError) as error:
            reason = error.reason if isinstance(error, ApiException) else str(error)
            self.failure = ("ContainerStartFailed", f"container {run.name}: {reason}")
            log.warning("%s/%s: %s", self.namespace, self.name, self.failure[1])
            for other in self.containers:
                self._signal(other, signal.SIGKILL)
            self.report(force=True)
            return False

    def _run_to_completion(self, run: ContainerRun, volumes: dict[str, Path]) -> bool:
        while True:
            if not self._try_start(run, volumes):
                return False
            while run.process is not None and run.process.poll() is None:
                if self.stop_requested_at is not None:
                    self._finish_stop()
                    return False
                time.sleep(0.25)
            self._collect(run)
            self.report()
            if run.exit_code == 0:
                return True
            if self._restart_policy() == "Never":
                self.failure = ("InitContainerFailed", f"init container {run.name} exited {run.exit_code}")
                self.report(force=True)
                return False
            run.last_exit = self._terminated(run)
            run.restarts += 1
            time.sleep(min(MAX_BACKOFF, 2 ** min(run.restarts - 1, 5)))

    def _wait_for_deletion(self) -> None:
        # A terminal pod stays until someone deletes it; then finish the deletion the kubelet's way.
        # Its final status is sent again until the apiserver took it: nothing else will change to
        # trigger a report, and a refused patch (429 under load, a restart) must not leave the pod
        # Running forever (found by benchmarks/load.py with 400 pods).
        ticks = 0
        while self.stop_requested_at is None:
            if ticks % 4 == 0:
                # Forced when the apiserver shows another phase (an older patch landed last).
                seen = self.pod.status.phase if self.pod.status else None
                self.report(force=seen is not None and seen != self._phase())
            ticks += 1
            time.sleep(0.5)
        self._finish_stop()

    def _finish_stop(self) -> None:
        grace = self.stop_grace or 0
        deadline = (self.stop_requested_at or time.monotonic()) + grace
        runs = self.init_containers + self.containers
        while time.monotonic() < deadline and any(r.running() for r in runs):
            time.sleep(0.1)
        for run in runs:
            self._signal(run, signal.SIGKILL)
            if run.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    run.process.wait(timeout=5)
            self._collect(run)
        if not self.killed:
            self.report()
            with contextlib.suppress(ApiException):
                self.agent.core.delete_namespaced_pod(
                    self.name,
                    self.namespace,
                    body=client.V1DeleteOptions(
                        grace_period_seconds=0, preconditions=client.V1Preconditions(uid=self.uid)
                    ),
                )
        shutil.rmtree(self.directory, ignore_errors=True)


class NodeAgent:
    def __init__(
        self,
        core: client.CoreV1Api,
        coordination: client.CoordinationV1Api,
        node_name: str,
        state_dir: Path,
        capacity: dict[str, str],
        apiserver_port: int,
        path_prefix: str = "",
    ) -> None:
        self.core = core
        self.path_prefix = path_prefix  # searched before the project's entrypoints (stand-ins in benchmarks)
        self.coordination = coordination
        self.node_name = node_name
        self.state_dir = state_dir
        self.capacity = capacity
        self.apiserver_port = apiserver_port
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.log_dir = state_dir / "logs"
        self.pid_dir = state_dir / "pids"
        self.pods_dir = state_dir / "pods"
        self._ips = itertools.count(random.randrange(1, 60000))
        for directory in (self.log_dir, self.pid_dir, self.pods_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def would_hide_itself(self, mount_path: str) -> bool:
        """Would a mount at `mount_path` cover the project's Python or the agent's state?"""
        target = os.path.realpath(mount_path).rstrip("/") + "/"
        protected = [sys.prefix, os.path.dirname(os.path.realpath(sys.executable)), str(self.state_dir.resolve())]
        protected += [path for path in self.path_prefix.split(":") if path]
        return any((os.path.realpath(path).rstrip("/") + "/").startswith(target) for path in protected)

    # ---- node and lease ----------------------------------------------------------------------------
    def _node_status(self) -> dict[str, Any]:
        stamp = iso(now())
        return {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": r,
                    "message": m,
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
                for t, s, r, m in (
                    ("Ready", "True", "BallastNodeAgentReady", "the Ballast node agent is running pods"),
                    ("MemoryPressure", "False", "NoPressure", ""),
                    ("DiskPressure", "False", "NoPressure", ""),
                    ("PIDPressure", "False", "NoPressure", ""),
                )
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, self.node_name).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.node_name)),
                "bootID": str(uuid.uuid4()),
                "kernelVersion": platform.release(),
                "osImage": "Ballast node agent (local processes)",
                "containerRuntimeVersion": "ballast://0.1",
                "kubeletVersion": "v1.36.3-ballast",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def register(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "ballast-local",
        }
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node_name, "labels": labels}}
        try:
            self.core.create_node(body)
        except ApiException as error:
            if error.status != 409:
                raise
        self.core.patch_node_status(self.node_name, {"status": self._node_status()})
        self._renew_lease()

    def _renew_lease(self) -> None:
        node = self.core.read_node(self.node_name, _request_timeout=API_TIMEOUT)
        body = {
            "metadata": {
                "name": self.node_name,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": node.metadata.uid}
                ],
            },
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
        }
        try:
            self.coordination.patch_namespaced_lease(
                self.node_name, "kube-node-lease", body, _request_timeout=API_TIMEOUT
            )
        except ApiException as error:
            if error.status != 404:
                raise
            self.coordination.create_namespaced_lease("kube-node-lease", body)

    def heartbeat(self) -> None:
        last_status = time.monotonic()
        while not self.stopping.wait(RENEW_EVERY):
            try:
                self._renew_lease()
                if time.monotonic() - last_status > 60:
                    self.core.patch_node_status(self.node_name, {"status": self._node_status()})
                    last_status = time.monotonic()
            except Exception as error:  # keep beating through apiserver restarts
                log.warning("heartbeat failed: %s", error)

    # ---- pods --------------------------------------------------------------------------------------
    def forget(self, uid: str) -> None:
        with self.lock:
            self.workers.pop(uid, None)

    def _next_ip(self) -> str:
        n = next(self._ips) % 65000 + 1
        return f"127.1.{n // 256}.{n % 256 or 1}"

    def handle(self, event_type: str, pod: Any) -> None:
        uid = pod.metadata.uid
        with self.lock:
            worker = self.workers.get(uid)
        if event_type == "DELETED":
            if worker:
                worker.kill()
            return
        if pod.metadata.deletion_timestamp is not None:
            if worker:
                grace = pod.metadata.deletion_grace_period_seconds
                worker.stop(float(grace if grace is not None else 30))
            else:
                with contextlib.suppress(ApiException):
                    self.core.delete_namespaced_pod(
                        pod.metadata.name,
                        pod.metadata.namespace,
                        body=client.V1DeleteOptions(
                            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
                        ),
                    )
            return
        if worker is not None:
            worker.pod = pod
            return
        phase = pod.status.phase if pod.status else None
        if phase in ("Succeeded", "Failed"):
            return
        ran_before = phase == "Running" or bool(pod.status and pod.status.container_statuses)
        if ran_before and (pod.spec.restart_policy or "Always") != "Always":
            # A pod this agent ran before it restarted: its processes are gone, and it may not restart.
            self._fail_orphan(pod)
            return
        self._start_worker(pod)

    def _fail_orphan(self, pod: Any) -> None:
        statuses = []
        for container in pod.spec.containers:
            statuses.append(
                {
                    "name": container.name,
                    "image": container.image or "local",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": 137,
                            "reason": "NodeAgentRestarted",
                            "finishedAt": iso(now()),
                            "startedAt": iso(now()),
                        }
                    },
                }
            )
        status = {
            "phase": "Failed",
            "reason": "NodeAgentRestarted",
            "message": "the node agent restarted and the pod's processes were lost",
            "containerStatuses": statuses,
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": iso(now())}],
        }
        with contextlib.suppress(ApiException):
            self.core.patch_namespaced_pod_status(
                pod.metadata.name, pod.metadata.namespace, {"status": status}, _request_timeout=API_TIMEOUT
            )

    def _start_worker(self, pod: Any) -> None:
        uid = pod.metadata.uid
        # A pod keeps the IP it was given (status.podIP may not change), e.g. after an agent restart.
        known_ip = pod.status.pod_ip if pod.status else None
        worker = PodWorker(
            agent=self,
            namespace=pod.metadata.namespace,
            name=pod.metadata.name,
            uid=uid,
            pod=pod,
            pod_ip=known_ip or self._next_ip(),
            directory=self.pods_dir / uid,
        )
        with self.lock:
            if uid in self.workers:
                return
            self.workers[uid] = worker
        worker.thread = threading.Thread(target=worker.run, name=f"pod-{pod.metadata.name}", daemon=True)
        worker.thread.start()
        log.info("%s/%s: starting (pod IP %s)", worker.namespace, worker.name, worker.pod_ip)

    def watch_pods(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        while not self.stopping.is_set():
            try:
                listing = self.core.list_pod_for_all_namespaces(field_selector=selector)
                for pod in listing.items:
                    self.handle("ADDED", pod)
                version = listing.metadata.resource_version
                stream = watch.Watch()
                for event in stream.stream(
                    self.core.list_pod_for_all_namespaces,
                    field_selector=selector,
                    resource_version=version,
                    timeout_seconds=int(RESYNC_EVERY),
                    allow_watch_bookmarks=True,
                ):
                    if self.stopping.is_set():
                        stream.stop()
                        break
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self.handle(event["type"], event["object"])
            except Exception as error:  # the apiserver may restart under us: relist and go on
                if not self.stopping.is_set():
                    log.warning("pod watch interrupted: %s", error)
                    time.sleep(1)

    def clean_orphans(self) -> None:
        """Kill processes a previous agent (killed hard) left running."""
        for pid_file in self.pid_dir.glob("*.pid"):
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                os.killpg(int(pid_file.read_text().strip()), signal.SIGKILL)
            pid_file.unlink(missing_ok=True)

    def shutdown(self) -> None:
        """Stop every pod process (SIGTERM, then SIGKILL) without deleting the pods."""
        self.stopping.set()
        with self.lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.killed = True
            for run in worker.init_containers + worker.containers:
                worker._signal(run, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(r.running() for w in workers for r in w.containers):
            time.sleep(0.1)
        for worker in workers:
            for run in worker.init_containers + worker.containers:
                worker._signal(run, signal.SIGKILL)
        self.clean_orphans()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ballast-node-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--node-name", default="ballast-node")
    parser.add_argument("--apiserver-port", type=int, required=True)
    parser.add_argument("--capacity", action="append", default=[], help="resource=amount, e.g. nvidia.com/gpu=1")
    parser.add_argument(
        "--path-prefix", default="", help="directories searched first for pod commands (a benchmark's stand-ins)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    capacity = {
        "cpu": str(os.cpu_count() or 2),
        "memory": "16Gi",
        "pods": "110",
        "nvidia.com/gpu": "1",
        "ephemeral-storage": "50Gi",
    }
    for item in args.capacity:
        key, _, value = item.partition("=")
        capacity[key] = value
    config.load_kube_config(args.kubeconfig)
    api = client.ApiClient()
    agent = NodeAgent(
        client.CoreV1Api(api),
        client.CoordinationV1Api(api),
        args.node_name,
        args.state_dir,
        capacity,
        args.apiserver_port,
        args.path_prefix,
    )
    agent.clean_orphans()

    def on_term(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping pods", signum)
        agent.shutdown()
        (args.state_dir / "ready").unlink(missing_ok=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while True:
        try:
            agent.register()
            break
        except Exception as error:
            log.warning("registering node failed, retrying: %s", error)
            time.sleep(1)
    threading.Thread(target=agent.heartbeat, name="heartbeat", daemon=True).start()
    (args.state_dir / "ready").write_text(args.node_name)
    log.info("node %s registered with capacity %s", args.node_name, capacity)
    agent.watch_pods()
    return 0


if __name__ == "__main__":
    sys.exit(main())
