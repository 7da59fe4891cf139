"""One pod as local processes: a thread that prepares its volumes, runs its init containers to
completion, starts and restarts its containers, probes them, reports the pod's status, and stops
everything (SIGTERM, its grace period, SIGKILL) when the pod is deleted.

The decisions are the pure modules'; this is where they meet processes, files and the apiserver.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import env, lifecycle, probes, sources, spec, status, termination, volumes
from .containers import ContainerRun, empty_file, now, probe_passes
from .lifecycle import InitOutcome
from .probes import Probe
from .spec import Container
from .termination import InVolume, MessageFile, OwnFile

if TYPE_CHECKING:
    from .agent import NodeAgent

log = logging.getLogger("ballast.nodeagent")
TICK = 0.25  # how often a running pod's processes are looked at
# Errors that fail a pod (with the reason) rather than the worker.
SETUP_ERRORS = (ApiException, KeyError, ValueError, OSError)


def _reason(error: Exception) -> str:
    return str(error.reason) if isinstance(error, ApiException) else str(error)


@dataclass
class PodWorker:
    agent: NodeAgent
    namespace: str
    name: str
    uid: str
    pod: Any  # V1Pod, replaced by the agent as newer versions arrive
    pod_ip: str
    directory: Path
    containers: list[ContainerRun] = field(default_factory=list)
    init_containers: list[ContainerRun] = field(default_factory=list)
    stop_grace: float | None = None
    stop_requested_at: float | None = None
    killed: bool = False
    thread: threading.Thread | None = None
    sent_conditions: list[dict[str, Any]] = field(default_factory=list)  # as last accepted by the apiserver
    failure: tuple[str, str] | None = None  # (reason, message) that fails the pod before it starts
    started_at: dt.datetime = field(default_factory=now)

    def runs(self) -> list[ContainerRun]:
        return self.init_containers + self.containers

    # ---- setup -------------------------------------------------------------------------------------
    def _facts(self) -> env.PodFacts:
        return spec.pod_facts(self.pod, self.agent.node_name, self.pod_ip)

    def _container_run(self, container: Any, init: bool = False) -> ContainerRun:
        parsed = spec.container(container)
        return ContainerRun(
            parsed,
            pid_file=self.agent.pid_dir / f"{self.uid}_{parsed.name}.pid",
            log_path=self.agent.log_dir / f"{self.namespace}_{self.name}_{parsed.name}.log",
            init=init,
        )

    def _env(self, container: Container) -> dict[str, str]:
        home = self.directory / "home"
        base = env.base_env(
            path_prefix=self.agent.path_prefix,
            python_bin=str(Path(sys.executable).parent),
            home=str(home),
            hostname=self.name,
            apiserver_port=self.agent.apiserver_port,
        )
        home.mkdir(parents=True, exist_ok=True)
        return sources.container_env(self.agent.core, container.env, base, self._facts())

    def _start(self, run: ContainerRun, volume_dirs: dict[str, str]) -> None:
        container = run.spec
        env.require_command(container.name, container.command)
        environment = self._env(container)
        argv = env.command_line(container.command, container.args, environment)
        hidden = {m.mount_path: self.agent.would_hide_itself(m.mount_path) for m in container.mounts}
        mounts, skipped = volumes.plan_mounts(container.name, container.mounts, volume_dirs, hidden)
        for mount in skipped:
            log.info(
                "%s/%s: not mounting %s at %s: it would hide %s",
                self.namespace,
                self.name,
                mount.name,
                mount.mount_path,
                sys.prefix,
            )
        path = container.termination_message_path
        place = termination.message_file(
            path, mounts, str(self.directory / "volumes"), hides_agent=self.agent.would_hide_itself(path)
        )
        message_file = self._message_file(run, place)
        if isinstance(place, OwnFile) and message_file is not None:
            mounts.append(volumes.Mount(str(message_file), place.target))
        cwd = container.working_dir or str(self.directory / "home")
        run.launch(volumes.in_mount_namespace(argv, mounts, container.name), argv, environment, cwd, message_file)

    def _message_file(self, run: ContainerRun, place: MessageFile) -> Path | None:
        """This start's termination message file, empty: in its volume, or a file of this start."""
        if isinstance(place, InVolume):
            path = Path(place.host_path)
            empty_file(path, within=Path(place.volume_dir))
            return path
        if isinstance(place, OwnFile):
            path = self.directory / "containers" / run.name / f"termination-log-{run.restarts}"
            empty_file(path, within=self.directory)
            return path
        if run.spec.termination_message_path != termination.DEFAULT_PATH:
            log.info(
                "%s/%s: %s gets no termination message file: %s", self.namespace, self.name, run.name, place.reason
            )
        return None

    # ---- probes ------------------------------------------------------------------------------------
    def _probe(self, probe: Probe, container: Container) -> bool:
        return probe_passes(probe, self.pod_ip, container.ports, lambda: self._env(container))

    def _run_probes(self, run: ContainerRun) -> None:
        clock = time.monotonic()
        readiness, liveness = run.spec.readiness, run.spec.liveness
        if readiness is None:
            run.probe_state = replace(run.probe_state, ready=run.running())
        elif probes.is_due(run.probe_state.next_readiness, clock, run.running()):
            passed = self._probe(readiness, run.spec)
            run.probe_state = probes.after_readiness(readiness, run.probe_state, passed, clock)
        if liveness is not None and probes.is_due(run.probe_state.next_liveness, clock, run.running()):
            passed = self._probe(liveness, run.spec)
            run.probe_state = probes.after_liveness(liveness, run.probe_state, passed, clock)
            if probes.liveness_kills(liveness, run.probe_state):
                log.info("%s/%s: liveness probe failed, restarting %s", self.namespace, self.name, run.name)
                run.signal(signal.SIGKILL)

    # ---- status ------------------------------------------------------------------------------------
    def phase(self) -> str:
        return status.pod_phase(
            [r.snapshot() for r in self.init_containers], [r.snapshot() for r in self.containers], bool(self.failure)
        )

    def report(self) -> None:
        """Send the pod's whole status, changed or not; only its conditions' times are kept stable."""
        current = status.pod_status(
            [r.snapshot() for r in self.init_containers],
            [r.snapshot() for r in self.containers],
            pod_ip=self.pod_ip,
            started_at=self.started_at,
            failure=self.failure,
        )
        current["conditions"] = status.keep_transition_times(current["conditions"], self.sent_conditions, now())
        try:
            self.agent.core.patch_namespaced_pod_status(
                self.name, self.namespace, {"status": current}, _request_timeout=sources.API_TIMEOUT
            )
        except ApiException as error:
            if error.status != 404:
                log.warning("%s/%s: status update failed: %s", self.namespace, self.name, error.reason)
            return
        except Exception as error:  # the apiserver is unreachable: keep running, report on the next tick
            log.warning("%s/%s: status update failed: %s", self.namespace, self.name, type(error).__name__)
            return
        self.sent_conditions = current["conditions"]

    # ---- lifecycle ---------------------------------------------------------------------------------
    def stop(self, grace: float) -> None:
        if self.stop_requested_at is None:
            self.stop_grace = grace
            self.stop_requested_at = time.monotonic()
            for run in self.runs():
                run.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.killed = True
        self.stop(0)

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("%s/%s: worker crashed", self.namespace, self.name)
            self.failure = ("NodeAgentError", "the node agent failed running this pod; see its log")
            for run in self.runs():
                run.signal(signal.SIGKILL)
            self.report()
        finally:
            self.agent.forget(self.uid)

    def _run(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.init_containers = [self._container_run(c, init=True) for c in self.pod.spec.init_containers or []]
        self.containers = [self._container_run(c) for c in self.pod.spec.containers]
        self.report()
        try:
            wanted = [spec.volume(v) for v in self.pod.spec.volumes or []]
            volume_dirs = sources.prepare_volumes(self.agent.core, wanted, self.directory / "volumes", self._facts())
        except SETUP_ERRORS as error:
            self.failure = ("VolumeSetupFailed", f"could not prepare volumes: {_reason(error)}")
            self.report()
            return self._wait_for_deletion()
        for run in self.init_containers:
            if not self._run_to_completion(run, volume_dirs):
                return self._wait_for_deletion()
        for run in self.containers:
            if not self._try_start(run, volume_dirs):
                break
        self.report()
        while True:
            if self.stop_requested_at is not None:
                self._finish_stop()
                return
            for run in self.containers:
                if run.collect():
                    log.info("%s/%s: %s exited %s", self.namespace, self.name, run.name, run.exit_code)
                    if lifecycle.should_restart(spec.restart_policy(self.pod), run.exit_code):
                        self._back_off(run)
                if run.restart_at is not None and time.monotonic() >= run.restart_at:
                    self._try_start(run, volume_dirs)
                self._run_probes(run)
            self.report()
            if status.is_terminal(self.phase()):
                return self._wait_for_deletion()
            time.sleep(TICK)

    def _back_off(self, run: ContainerRun) -> None:
        run.last_exit = status.terminated(run.snapshot())
        run.restarts += 1
        backoff = lifecycle.restart_backoff(run.restarts)
        run.restart_at = time.monotonic() + backoff
        run.waiting_reason = lifecycle.waiting_reason(run.exit_code)
        run.waiting_message = lifecycle.backoff_message(run.name, backoff)

    def _try_start(self, run: ContainerRun, volume_dirs: dict[str, str]) -> bool:
        try:
            self._start(run, volume_dirs)
            return True
        except SETUP_ERRORS as error:
            self.failure = ("ContainerStartFailed", f"container {run.name}: {_reason(error)}")
            log.warning("%s/%s: %s", self.namespace, self.name, self.failure[1])
            for other in self.containers:
                other.signal(signal.SIGKILL)
            self.report()
            return False

    def _run_to_completion(self, run: ContainerRun, volume_dirs: dict[str, str]) -> bool:
        while True:
            if not self._try_start(run, volume_dirs):
                return False
            while run.running():
                if self.stop_requested_at is not None:
                    self._finish_stop()
                    return False
                time.sleep(TICK)
            run.collect()
            self.report()
            outcome = lifecycle.init_outcome(spec.restart_policy(self.pod), run.exit_code)
            if outcome is InitOutcome.DONE:
                return True
            if outcome is InitOutcome.FAIL_POD:
                self.failure = ("InitContainerFailed", f"init container {run.name} exited {run.exit_code}")
                self.report()
                return False
            run.last_exit = status.terminated(run.snapshot())
            run.restarts += 1
            time.sleep(lifecycle.restart_backoff(run.restarts))

    def _wait_for_deletion(self) -> None:
        # A terminal pod stays until someone deletes it; then finish the deletion the kubelet's way.
        # Its final status is sent again every 2 s meanwhile: nothing else will change to trigger a
        # report, and a refused patch (429 under load, a restart) must not leave the pod Running
        # forever (found by benchmarks/load.py with 400 pods).
        ticks = 0
        while self.stop_requested_at is None:
            if ticks % 4 == 0:
                self.report()
            ticks += 1
            time.sleep(0.5)
        self._finish_stop()

    def _finish_stop(self) -> None:
        deadline = (self.stop_requested_at or time.monotonic()) + (self.stop_grace or 0)
        runs = self.runs()
        while time.monotonic() < deadline and any(r.running() for r in runs):
            time.sleep(0.1)
        for run in runs:
            run.signal(signal.SIGKILL)
            if run.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    run.process.wait(timeout=5)
            run.collect()
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
