"""The node: registers it, renews its Lease, watches the Pods bound to it and gives each a worker.

A pod found Running with restartPolicy other than Always when the agent starts ran under a
previous agent whose processes are gone: it is marked Failed rather than run a second time.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import platform
import random
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from . import lifecycle, node, spec, status, volumes
from .containers import now
from .lifecycle import PodAction
from .sources import API_TIMEOUT
from .worker import PodWorker

log = logging.getLogger("ballast.nodeagent")

RENEW_EVERY = 10.0
RESYNC_EVERY = 20.0
STATUS_EVERY = 60.0  # the node's status is re-sent this often besides the Lease
SHUTDOWN_GRACE = 10.0  # how long pods get between SIGTERM and SIGKILL when the agent stops


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
        protected = [sys.prefix, os.path.dirname(os.path.realpath(sys.executable)), str(self.state_dir.resolve())]
        protected += [path for path in self.path_prefix.split(":") if path]
        return volumes.would_hide(os.path.realpath(mount_path), [os.path.realpath(path) for path in protected])

    # ---- node and lease ----------------------------------------------------------------------------
    def _node_status(self) -> dict[str, Any]:
        return node.node_status(
            self.node_name, self.capacity, now(), kernel_version=platform.release(), boot_id=str(uuid.uuid4())
        )

    def register(self) -> None:
        try:
            self.core.create_node(node.node_body(self.node_name))
        except ApiException as error:
            if error.status != 409:
                raise
        self.core.patch_node_status(self.node_name, {"status": self._node_status()})
        self._renew_lease()

    def _renew_lease(self) -> None:
        uid = self.core.read_node(self.node_name, _request_timeout=API_TIMEOUT).metadata.uid
        body = node.lease_body(self.node_name, uid, now())
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
                if time.monotonic() - last_status > STATUS_EVERY:
                    self.core.patch_node_status(self.node_name, {"status": self._node_status()})
                    last_status = time.monotonic()
            except Exception as error:  # keep beating through apiserver restarts
                log.warning("heartbeat failed: %s", error)

    # ---- pods --------------------------------------------------------------------------------------
    def forget(self, uid: str) -> None:
        with self.lock:
            self.workers.pop(uid, None)

    def handle(self, event_type: str, pod: Any) -> None:
        uid = pod.metadata.uid
        with self.lock:
            worker = self.workers.get(uid)
        action = lifecycle.pod_action(
            event_type,
            has_worker=worker is not None,
            deleting=pod.metadata.deletion_timestamp is not None,
            phase=pod.status.phase if pod.status else None,
            has_container_statuses=bool(pod.status and pod.status.container_statuses),
            restart_policy=spec.restart_policy(pod),
        )
        if action is PodAction.KILL and worker is not None:
            worker.kill()
        elif action is PodAction.STOP and worker is not None:
            worker.stop(lifecycle.grace_seconds(pod.metadata.deletion_grace_period_seconds))
        elif action is PodAction.DELETE:
            self._delete_now(pod)
        elif action is PodAction.UPDATE and worker is not None:
            worker.pod = pod
        elif action is PodAction.FAIL_ORPHAN:
            self._fail_orphan(pod)
        elif action is PodAction.START:
            self._start_worker(pod)

    def _delete_now(self, pod: Any) -> None:
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                pod.metadata.name,
                pod.metadata.namespace,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=pod.metadata.uid)
                ),
            )

    def _fail_orphan(self, pod: Any) -> None:
        containers = [(c.name, c.image or "local") for c in pod.spec.containers]
        with contextlib.suppress(ApiException):
            self.core.patch_namespaced_pod_status(
                pod.metadata.name,
                pod.metadata.namespace,
                {"status": status.orphan_status(containers, now())},
                _request_timeout=API_TIMEOUT,
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
            pod_ip=known_ip or lifecycle.pod_ip(next(self._ips)),
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
            for run in worker.runs():
                run.signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while time.monotonic() < deadline and any(r.running() for w in workers for r in w.containers):
            time.sleep(0.1)
        for worker in workers:
            for run in worker.runs():
                run.signal(signal.SIGKILL)
        self.clean_orphans()
