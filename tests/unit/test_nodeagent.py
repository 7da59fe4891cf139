"""The node agent's decisions, without processes or an apiserver: each pure module, as tables.

The agent itself (processes, mounts, the apiserver) is tested against a real control plane in
tests/integration/test_local_cluster.py.
"""

from __future__ import annotations

import ast
import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from ballast_dev.cluster.nodeagent import env, lifecycle, node, probes, spec, status, termination, volumes
from ballast_dev.cluster.nodeagent.env import (
    EnvFrom,
    EnvSpec,
    EnvVar,
    FieldRef,
    KeyRef,
    PodFacts,
    ResourceFieldRef,
    SourceNotFetched,
    SourceRef,
)
from ballast_dev.cluster.nodeagent.lifecycle import InitOutcome, PodAction
from ballast_dev.cluster.nodeagent.probes import ExecAction, HttpGet, Probe, ProbeState, TcpSocket
from ballast_dev.cluster.nodeagent.status import ContainerState
from ballast_dev.cluster.nodeagent.termination import InVolume, MessageFile, NoFile, OwnFile, Unreadable
from ballast_dev.cluster.nodeagent.volumes import (
    DataFiles,
    DownwardFile,
    KeyToPath,
    Mount,
    ServiceAccountToken,
    Volume,
    VolumeMount,
)

T0 = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(seconds=42)


# ---- builders -----------------------------------------------------------------------------------
def a_container(**overrides: Any) -> ContainerState:
    return replace(ContainerState(name="main"), **overrides)


def running(**overrides: Any) -> ContainerState:
    return a_container(**{"pid": 100, "running": True, "started_at": T0, "waiting_reason": None} | overrides)


def exited(code: int, **overrides: Any) -> ContainerState:
    started = {"pid": 100, "exit_code": code, "started_at": T0, "finished_at": T1, "waiting_reason": None}
    return a_container(**started | overrides)


def waiting_to_restart(code: int, **overrides: Any) -> ContainerState:
    return exited(code, restart_pending=True, waiting_reason=lifecycle.waiting_reason(code), **overrides)


def a_pod(**overrides: Any) -> PodFacts:
    facts = PodFacts(
        name="web-1",
        namespace="shop",
        uid="u-1",
        node_name="ballast-node",
        service_account="default",
        pod_ip="127.1.0.7",
        labels={"app": "web", "tier": "front"},
        annotations={"note": "hi"},
    )
    return replace(facts, **overrides)


CM = SourceRef("configMap", "settings")
SECRET = SourceRef("secret", "creds")
OPTIONAL_SECRET = SourceRef("secret", "creds", optional=True)
FETCHED: dict[SourceRef, dict[str, bytes]] = {
    CM: {"MODE": b"fast", "LEVEL": b"3"},
    SECRET: {"token": b"t0p"},
    OPTIONAL_SECRET: {},
}


# ---- status: container statuses, the pod's phase and conditions ----------------------------------
@pytest.mark.parametrize(
    ("container", "state"),
    [
        pytest.param(
            running(), {"running": {"startedAt": "2026-11-26T12:00:00Z"}}, id="a running container reports its start"
        ),
        pytest.param(
            exited(0),
            {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": "2026-11-26T12:00:00Z",
                    "finishedAt": "2026-11-26T12:00:42Z",
                    "containerID": "ballast://100",
                }
            },
            id="a container that exited 0 is terminated as Completed",
        ),
        pytest.param(
            exited(3),
            {
                "terminated": {
                    "exitCode": 3,
                    "reason": "Error",
                    "startedAt": "2026-11-26T12:00:00Z",
                    "finishedAt": "2026-11-26T12:00:42Z",
                    "containerID": "ballast://100",
                }
            },
            id="a container that exited 3 is terminated as Error with exit code 3",
        ),
        pytest.param(
            waiting_to_restart(1, waiting_message="back-off 2s restarting container main"),
            {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2s restarting container main"}},
            id="a crashed container waiting to restart is waiting in CrashLoopBackOff with the back-off",
        ),
        pytest.param(
            a_container(),
            {"waiting": {"reason": "ContainerCreating"}},
            id="a container that never started is waiting in ContainerCreating",
        ),
        pytest.param(
            a_container(waiting_reason=None),
            {"waiting": {"reason": "ContainerCreating"}},
            id="a waiting container without a reason reads ContainerCreating",
        ),
    ],
)
def test_a_container_status_reports_the_state_of_its_process(container: ContainerState, state: dict) -> None:
    reported = status.container_status(container)
    assert reported["state"] == state
    assert reported["started"] is container.running
    assert reported["name"] == "main"
    assert "lastState" not in reported


@pytest.mark.parametrize(
    ("container", "container_id"),
    [
        pytest.param(running(pid=4242), "ballast://4242", id="a started container's ID names its process"),
        pytest.param(a_container(), None, id="a container never started has no container ID"),
    ],
)
def test_a_container_id_names_the_process(container: ContainerState, container_id: str | None) -> None:
    assert status.container_status(container)["containerID"] == container_id


def test_a_restarted_container_reports_its_restart_count_readiness_and_last_exit() -> None:
    last = status.terminated(exited(1))
    reported = status.container_status(running(restarts=2, ready=True, last_exit=last, image="python:3.11"))
    assert reported["restartCount"] == 2
    assert reported["ready"] is True
    assert reported["image"] == "python:3.11"
    assert reported["lastState"] == {"terminated": last}
    assert reported["lastState"]["terminated"]["reason"] == "Error"


@pytest.mark.parametrize(
    ("container", "message"),
    [
        pytest.param(
            exited(0, message='{"digest": "sha256:ab"}'),
            '{"digest": "sha256:ab"}',
            id="a container that exited with a termination message reports it in its terminated state",
        ),
        pytest.param(exited(0), None, id="a container that exited without a message reports no message key"),
        pytest.param(exited(0, message=""), None, id="an empty message is no message"),
    ],
)
def test_a_terminated_state_carries_the_termination_message(container: ContainerState, message: str | None) -> None:
    terminated = status.container_status(container)["state"]["terminated"]
    assert terminated.get("message") == message
    assert ("message" in terminated) is (message is not None)


def test_a_restarted_container_keeps_its_last_termination_message_in_its_last_state() -> None:
    last = status.terminated(exited(1, message="CUDA out of memory"))
    reported = status.container_status(running(restarts=1, last_exit=last))
    assert reported["lastState"]["terminated"]["message"] == "CUDA out of memory"
    assert "terminated" not in reported["state"]


def exits_under(policy: str, *codes: int) -> list[ContainerState]:
    """Containers that exited with `codes`, waiting to restart where `policy` restarts them."""
    return [waiting_to_restart(code) if lifecycle.should_restart(policy, code) else exited(code) for code in codes]


@pytest.mark.parametrize(
    ("containers", "phase"),
    [
        pytest.param(
            exits_under("Never", 1),
            "Failed",
            id="a pod whose only container exited 1 with restartPolicy Never is Failed",
        ),
        pytest.param(
            exits_under("Never", 0), "Succeeded", id="a pod whose only container exited 0 with Never Succeeded"
        ),
        pytest.param(
            exits_under("OnFailure", 0), "Succeeded", id="a pod whose container exited 0 under OnFailure Succeeded"
        ),
        pytest.param(
            exits_under("OnFailure", 1),
            "Running",
            id="a pod whose container exited 1 under OnFailure waits to restart it and stays Running",
        ),
        pytest.param(
            exits_under("Always", 0), "Running", id="a pod under Always stays Running when its container completes"
        ),
        pytest.param(
            exits_under("Never", 0, 2), "Failed", id="one container that failed fails a pod whose others succeeded"
        ),
        pytest.param(
            [running(), exited(0)], "Running", id="a pod with one container running and one finished is Running"
        ),
        pytest.param([a_container()], "Pending", id="a pod whose container has not started yet is Pending"),
        pytest.param([running(), a_container()], "Pending", id="a pod is Pending until every container started"),
        pytest.param([], "Pending", id="a pod without containers is Pending"),
        pytest.param(
            [running(running=False)],
            "Running",
            id="a container whose process ended but whose exit is not collected yet keeps the pod Running",
        ),
    ],
)
def test_the_phase_follows_the_containers(containers: list[ContainerState], phase: str) -> None:
    assert status.pod_phase([], containers, failed=False) == phase


@pytest.mark.parametrize(
    ("init", "containers", "failed", "phase"),
    [
        pytest.param(
            [], [running()], True, "Failed", id="a pod the agent failed is Failed even while a container runs"
        ),
        pytest.param(
            [running()], [a_container()], False, "Pending", id="a pod is Pending while an init container runs"
        ),
        pytest.param(
            [a_container()], [a_container()], False, "Pending", id="a pod is Pending before its init container starts"
        ),
        pytest.param(
            [waiting_to_restart(1)],
            [a_container()],
            False,
            "Pending",
            id="a pod is Pending while its init container waits to retry",
        ),
        pytest.param([exited(0)], [running()], False, "Running", id="a pod runs once its init containers succeeded"),
    ],
)
def test_the_phase_waits_for_init_containers_and_honours_a_failure(
    init: list[ContainerState], containers: list[ContainerState], failed: bool, phase: str
) -> None:
    assert status.pod_phase(init, containers, failed=failed) == phase


def conditions_of(pod_status: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in pod_status["conditions"]}


@pytest.mark.parametrize(
    ("init", "containers", "ready", "initialized"),
    [
        pytest.param([], [running(ready=True)], "True", "True", id="a running pod whose containers are ready is Ready"),
        pytest.param(
            [],
            [running(ready=True), running(ready=False)],
            "False",
            "True",
            id="one unready container makes it unready",
        ),
        pytest.param([], [exited(0, ready=True)], "False", "True", id="a pod that Succeeded is not Ready"),
        pytest.param(
            [exited(1)], [a_container()], "False", "False", id="an init container that failed: not Initialized"
        ),
        pytest.param(
            [exited(0)], [running(ready=True)], "True", "True", id="init containers that exited 0: Initialized"
        ),
    ],
)
def test_the_pod_conditions_say_whether_it_is_ready_and_initialized(
    init: list[ContainerState], containers: list[ContainerState], ready: str, initialized: str
) -> None:
    pod_status = status.pod_status(init, containers, pod_ip="127.1.0.7", started_at=T0)
    assert conditions_of(pod_status) == {
        "PodScheduled": "True",
        "Initialized": initialized,
        "ContainersReady": ready,
        "Ready": ready,
    }
    assert {c["lastTransitionTime"] for c in pod_status["conditions"]} == {"2026-11-26T12:00:00Z"}


def test_a_pod_status_carries_its_ip_start_and_every_container() -> None:
    pod_status = status.pod_status([exited(0)], [running(), running(name="side")], pod_ip="127.1.0.7", started_at=T0)
    assert pod_status["phase"] == "Running"
    assert pod_status["podIP"] == "127.1.0.7"
    assert pod_status["podIPs"] == [{"ip": "127.1.0.7"}]
    assert pod_status["hostIP"] == "127.0.0.1"
    assert pod_status["startTime"] == "2026-11-26T12:00:00Z"
    assert [c["name"] for c in pod_status["containerStatuses"]] == ["main", "side"]
    assert len(pod_status["initContainerStatuses"]) == 1
    assert "reason" not in pod_status


def test_a_pod_without_init_containers_reports_no_init_statuses() -> None:
    assert "initContainerStatuses" not in status.pod_status([], [running()], pod_ip="127.1.0.7", started_at=T0)


def test_a_failure_fails_the_pod_and_says_why() -> None:
    failure = ("VolumeSetupFailed", "could not prepare volumes: Not Found")
    pod_status = status.pod_status([], [a_container()], pod_ip="127.1.0.7", started_at=T0, failure=failure)
    assert (pod_status["phase"], pod_status["reason"], pod_status["message"]) == ("Failed", *failure)


def condition(kind: str, value: str, moment: str) -> dict[str, str]:
    return {"type": kind, "status": value, "lastTransitionTime": moment}


@pytest.mark.parametrize(
    ("previous", "time"),
    [
        pytest.param([], "2026-11-26T12:00:00Z", id="a condition never sent keeps the pod's start as its time"),
        pytest.param(
            [condition("Ready", "True", "2026-11-26T12:00:10Z")],
            "2026-11-26T12:00:10Z",
            id="a condition sent before with the same status keeps the time it was sent with",
        ),
        pytest.param(
            [condition("Ready", "False", "2026-11-26T12:00:10Z")],
            "2026-11-26T12:00:42Z",
            id="a condition whose status changed since it was sent moves to now",
        ),
    ],
)
def test_transition_times_move_only_when_a_status_changes(previous: list[dict], time: str) -> None:
    [kept] = status.keep_transition_times([condition("Ready", "True", "2026-11-26T12:00:00Z")], previous, T1)
    assert kept == condition("Ready", "True", time)


def test_an_orphaned_pod_is_failed_with_every_container_killed() -> None:
    orphan = status.orphan_status([("main", "python:3.11"), ("side", "local")], T0)
    assert (orphan["phase"], orphan["reason"]) == ("Failed", "NodeAgentRestarted")
    assert [c["name"] for c in orphan["containerStatuses"]] == ["main", "side"]
    assert {c["state"]["terminated"]["exitCode"] for c in orphan["containerStatuses"]} == {137}
    assert orphan["conditions"] == [condition("Ready", "False", "2026-11-26T12:00:00Z")]


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(
            dt.datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=dt.UTC),
            "2026-01-02T03:04:05Z",
            id="a timestamp is UTC to the second with a Z",
        ),
        pytest.param(None, None, id="a missing time has no timestamp"),
    ],
)
def test_timestamps_are_kubernetes_times(moment: dt.datetime | None, text: str | None) -> None:
    assert status.iso(moment) == text


@pytest.mark.parametrize(
    ("phase", "terminal"),
    [
        pytest.param("Succeeded", True, id="Succeeded is terminal"),
        pytest.param("Failed", True, id="Failed is terminal"),
        pytest.param("Running", False, id="Running is not terminal"),
        pytest.param(None, False, id="no phase is not terminal"),
    ],
)
def test_terminal_phases(phase: str | None, terminal: bool) -> None:
    assert status.is_terminal(phase) is terminal


# ---- lifecycle: restarts, back-off, pod events -----------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        pytest.param("Always", 0, True, id="a container that exited 0 under restartPolicy Always is restarted"),
        pytest.param("Always", 1, True, id="a container that exited 1 under restartPolicy Always is restarted"),
        pytest.param(
            "OnFailure", 0, False, id="a container that exited 0 under restartPolicy OnFailure is not restarted"
        ),
        pytest.param("OnFailure", 1, True, id="a container that exited 1 under restartPolicy OnFailure is restarted"),
        pytest.param("OnFailure", 137, True, id="a container killed under restartPolicy OnFailure is restarted"),
        pytest.param("Never", 0, False, id="a container that exited 0 under restartPolicy Never is not restarted"),
        pytest.param("Never", 1, False, id="a container that exited 1 under restartPolicy Never is not restarted"),
    ],
)
def test_whether_a_container_is_restarted(policy: str, code: int, restart: bool) -> None:
    assert lifecycle.should_restart(policy, code) is restart


@pytest.mark.parametrize(
    ("restarts", "seconds"),
    [
        pytest.param(1, 1.0, id="the first restart waits 1 s"),
        pytest.param(2, 2.0, id="the second restart waits 2 s"),
        pytest.param(3, 4.0, id="each restart doubles the wait"),
        pytest.param(5, 16.0, id="the fifth restart waits 16 s"),
        pytest.param(6, 30.0, id="the wait is capped at 30 s"),
        pytest.param(50, 30.0, id="the wait stays capped however often it crashed"),
    ],
)
def test_the_restart_back_off(restarts: int, seconds: float) -> None:
    assert lifecycle.restart_backoff(restarts) == seconds


@pytest.mark.parametrize(
    ("returncode", "code"),
    [
        pytest.param(0, 0, id="a process that exited 0 reads 0"),
        pytest.param(3, 3, id="a process that exited 3 reads 3"),
        pytest.param(-9, 137, id="a process killed by SIGKILL reads 137"),
        pytest.param(-15, 143, id="a process killed by SIGTERM reads 143"),
    ],
)
def test_exit_codes_of_signalled_processes_read_128_plus_the_signal(returncode: int, code: int) -> None:
    assert lifecycle.exit_code(returncode) == code


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        pytest.param(0, "Completed", id="a container that completed waits as Completed"),
        pytest.param(2, "CrashLoopBackOff", id="a container that crashed waits in CrashLoopBackOff"),
    ],
)
def test_why_a_container_waits_to_restart(code: int, reason: str) -> None:
    assert lifecycle.waiting_reason(code) == reason


def test_the_back_off_message_names_the_wait_and_the_container() -> None:
    assert lifecycle.backoff_message("main", 4.0) == "back-off 4s restarting container main"


@pytest.mark.parametrize(
    ("policy", "code", "outcome"),
    [
        pytest.param("Never", 0, InitOutcome.DONE, id="an init container that exited 0 lets the next one run"),
        pytest.param("Never", 1, InitOutcome.FAIL_POD, id="an init container that failed under Never fails the pod"),
        pytest.param("OnFailure", 1, InitOutcome.RETRY, id="an init container that failed under OnFailure is retried"),
        pytest.param("Always", 1, InitOutcome.RETRY, id="an init container that failed under Always is retried"),
    ],
)
def test_what_follows_an_init_container(policy: str, code: int, outcome: InitOutcome) -> None:
    assert lifecycle.init_outcome(policy, code) is outcome


def an_event(
    event_type: str = "ADDED",
    *,
    has_worker: bool = False,
    deleting: bool = False,
    phase: str | None = "Pending",
    has_container_statuses: bool = False,
    restart_policy: str = "Always",
) -> PodAction:
    return lifecycle.pod_action(
        event_type,
        has_worker=has_worker,
        deleting=deleting,
        phase=phase,
        has_container_statuses=has_container_statuses,
        restart_policy=restart_policy,
    )


@pytest.mark.parametrize(
    ("event", "action"),
    [
        pytest.param(an_event(), PodAction.START, id="a new pending pod is started"),
        pytest.param(
            an_event("DELETED", has_worker=True), PodAction.KILL, id="a pod gone from the apiserver is killed"
        ),
        pytest.param(an_event("DELETED"), PodAction.IGNORE, id="a pod gone that runs nowhere here needs nothing"),
        pytest.param(
            an_event("MODIFIED", has_worker=True, deleting=True), PodAction.STOP, id="a pod being deleted is stopped"
        ),
        pytest.param(
            an_event("MODIFIED", deleting=True),
            PodAction.DELETE,
            id="a pod being deleted that runs nowhere here is deleted at once",
        ),
        pytest.param(
            an_event("MODIFIED", has_worker=True, phase="Running"),
            PodAction.UPDATE,
            id="a pod that runs here gets its newer object",
        ),
        pytest.param(an_event(phase="Succeeded"), PodAction.IGNORE, id="a pod that Succeeded is left alone"),
        pytest.param(an_event(phase="Failed"), PodAction.IGNORE, id="a pod that Failed is left alone"),
        pytest.param(
            an_event(phase="Running", restart_policy="Never"),
            PodAction.FAIL_ORPHAN,
            id="a Running pod under Never that no worker runs lost its processes and is failed",
        ),
        pytest.param(
            an_event(phase="Pending", has_container_statuses=True, restart_policy="OnFailure"),
            PodAction.FAIL_ORPHAN,
            id="a pod with container statuses under OnFailure that no worker runs ran before and is failed",
        ),
        pytest.param(
            an_event(phase="Running", restart_policy="Always"),
            PodAction.START,
            id="a Running pod under Always that no worker runs is started again",
        ),
    ],
)
def test_what_a_pod_event_asks_of_the_agent(event: PodAction, action: PodAction) -> None:
    assert event is action


@pytest.mark.parametrize(
    ("grace", "seconds"),
    [
        pytest.param(None, 30.0, id="a deletion without a grace period gives 30 s"),
        pytest.param(0, 0.0, id="a deletion with grace 0 gives none"),
        pytest.param(5, 5.0, id="a deletion with grace 5 gives 5 s"),
    ],
)
def test_the_grace_period_of_a_deleted_pod(grace: int | None, seconds: float) -> None:
    assert lifecycle.grace_seconds(grace) == seconds


@pytest.mark.parametrize(
    ("n", "ip"),
    [
        pytest.param(0, "127.1.0.1", id="the first address is 127.1.0.1"),
        pytest.param(6, "127.1.0.7", id="addresses count up"),
        pytest.param(255, "127.1.1.1", id="an address never ends in .0"),
        pytest.param(64999, "127.1.253.232", id="the last address before wrapping"),
        pytest.param(65000, "127.1.0.1", id="addresses wrap after 65000"),
    ],
)
def test_pod_ips_are_loopback_addresses(n: int, ip: str) -> None:
    assert lifecycle.pod_ip(n) == ip


# ---- env: $(VAR) expansion and a container's environment -------------------------------------------
@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        pytest.param("--host=$(HOST)", "--host=127.1.0.7", id="a defined $(VAR) is replaced"),
        pytest.param("$(HOST):$(PORT)", "127.1.0.7:8080", id="several variables are replaced"),
        pytest.param("cost: $$5", "cost: $5", id="$$ escapes a dollar"),
        pytest.param("$$(HOST)", "$(HOST)", id="an escaped $$(VAR) is not expanded"),
        pytest.param("$(MISSING)", "$(MISSING)", id="an undefined $(VAR) stays as written"),
        pytest.param("$HOST", "$HOST", id="a $VAR without parentheses stays as written"),
        pytest.param("$(my.var-1)", "dotted", id="a name may hold dots and dashes"),
        pytest.param("$(1X)", "$(1X)", id="a name starting with a digit is not a variable"),
    ],
)
def test_dollar_var_expansion(text: str, expanded: str) -> None:
    assert env.expand(text, {"HOST": "127.1.0.7", "PORT": "8080", "my.var-1": "dotted", "1X": "no"}) == expanded


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param("metadata.name", "web-1", id="metadata.name is the pod's name"),
        pytest.param("metadata.namespace", "shop", id="metadata.namespace is its namespace"),
        pytest.param("metadata.uid", "u-1", id="metadata.uid is its UID"),
        pytest.param("spec.nodeName", "ballast-node", id="spec.nodeName is this node"),
        pytest.param("spec.serviceAccountName", "default", id="spec.serviceAccountName is its service account"),
        pytest.param("status.podIP", "127.1.0.7", id="status.podIP is its loopback address"),
        pytest.param("status.podIPs", "127.1.0.7", id="status.podIPs is its one address"),
        pytest.param("status.hostIP", "127.0.0.1", id="status.hostIP is the loopback"),
        pytest.param("metadata.labels['app']", "web", id="metadata.labels[key] reads one label"),
        pytest.param("metadata.labels['nope']", "", id="a missing label reads empty"),
        pytest.param(
            "metadata.labels", 'app="web"\ntier="front"', id="metadata.labels reads every label sorted one per line"
        ),
        pytest.param("metadata.annotations['note']", "hi", id="metadata.annotations[key] reads one annotation"),
    ],
)
def test_the_downward_api_fields(path: str, value: str) -> None:
    assert env.field_value(path, a_pod()) == value


def test_an_unsupported_field_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"unsupported fieldRef spec\.containers"):
        env.field_value("spec.containers", a_pod())


@pytest.mark.parametrize(
    ("prefix", "path"),
    [
        pytest.param("", "/venv/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", id="PATH starts at the venv"),
        pytest.param(
            "/stand-ins", "/stand-ins:/venv/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", id="a prefix comes first"
        ),
    ],
)
def test_every_container_starts_from_the_base_environment(prefix: str, path: str) -> None:
    base = env.base_env(
        path_prefix=prefix, python_bin="/venv/bin", home="/pods/u/home", hostname="web-1", apiserver_port=6443
    )
    assert base["PATH"] == path
    assert (base["HOME"], base["HOSTNAME"], base["LANG"]) == ("/pods/u/home", "web-1", "C.UTF-8")
    assert (base["KUBERNETES_SERVICE_HOST"], base["KUBERNETES_SERVICE_PORT"]) == ("127.0.0.1", "6443")
    assert base["KUBERNETES_SERVICE_PORT_HTTPS"] == "6443"


def test_the_sources_an_environment_reads_come_in_reading_order_each_once() -> None:
    spec_ = EnvSpec(
        env_from=(EnvFrom(CM),),
        env=(
            EnvVar("A", value_from=KeyRef(SECRET, "token")),
            EnvVar("B", "plain"),
            EnvVar("C", value_from=KeyRef(CM, "MODE")),
        ),
    )
    assert env.env_sources(spec_) == [CM, SECRET]


BASE = {"PATH": "/bin", "HOME": "/home"}


@pytest.mark.parametrize(
    ("spec_", "expected"),
    [
        pytest.param(EnvSpec(env=(EnvVar("A", "1"),)), BASE | {"A": "1"}, id="a value is set as written"),
        pytest.param(
            EnvSpec(env=(EnvVar("A", "x"), EnvVar("B", "$(A)-$(HOME)"))),
            BASE | {"A": "x", "B": "x-/home"},
            id="a value expands variables defined before it",
        ),
        pytest.param(
            EnvSpec(env=(EnvVar("B", "$(A)"), EnvVar("A", "x"))),
            BASE | {"A": "x", "B": "$(A)"},
            id="a value does not see variables defined after it",
        ),
        pytest.param(
            EnvSpec(env=(EnvVar("TOKEN", value_from=KeyRef(SECRET, "token")),)),
            BASE | {"TOKEN": "t0p"},
            id="a secretKeyRef reads the decoded secret value",
        ),
        pytest.param(
            EnvSpec(env=(EnvVar("MODE", value_from=KeyRef(CM, "MODE")),)),
            BASE | {"MODE": "fast"},
            id="a configMapKeyRef reads the config map value",
        ),
        pytest.param(
            EnvSpec(env=(EnvVar("T", value_from=KeyRef(OPTIONAL_SECRET, "token")),)),
            BASE,
            id="a missing key of an optional reference leaves the variable unset",
        ),
        pytest.param(
            EnvSpec(env=(EnvVar("ME", value_from=FieldRef("metadata.name")),)),
            BASE | {"ME": "web-1"},
            id="a fieldRef reads the pod field",
        ),
        pytest.param(
            EnvSpec(env=(EnvVar("CPU", value_from=ResourceFieldRef()),)),
            BASE | {"CPU": "0"},
            id="a resourceFieldRef reads 0 since resources are not enforced",
        ),
        pytest.param(
            EnvSpec(env_from=(EnvFrom(CM, "CFG_"),)),
            BASE | {"CFG_MODE": "fast", "CFG_LEVEL": "3"},
            id="envFrom sets every key under its prefix",
        ),
        pytest.param(
            EnvSpec(env_from=(EnvFrom(CM),), env=(EnvVar("MODE", "slow"),)),
            BASE | {"MODE": "slow", "LEVEL": "3"},
            id="env overrides envFrom",
        ),
        pytest.param(
            EnvSpec(env_from=(EnvFrom(OPTIONAL_SECRET),)), BASE, id="envFrom of an optional missing secret adds nothing"
        ),
    ],
)
def test_a_container_environment(spec_: EnvSpec, expected: dict[str, str]) -> None:
    assert env.container_env(BASE, spec_, FETCHED, a_pod()) == expected


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        pytest.param(KeyRef(SECRET, "nope"), "secret creds has no key nope", id="a missing secret key fails naming it"),
        pytest.param(KeyRef(CM, "nope"), "configmap settings has no key nope", id="a missing config map key fails"),
    ],
)
def test_a_missing_key_of_a_required_reference_fails_the_start(ref: KeyRef, message: str) -> None:
    with pytest.raises(KeyError, match=message):
        env.container_env(BASE, EnvSpec(env=(EnvVar("X", value_from=ref),)), FETCHED, a_pod())


def test_a_reference_that_could_not_be_fetched_is_reported_where_it_is_read() -> None:
    missing = SourceRef("secret", "elsewhere")
    with pytest.raises(SourceNotFetched):
        env.container_env(BASE, EnvSpec(env=(EnvVar("X", value_from=KeyRef(missing, "k")),)), FETCHED, a_pod())


def test_a_missing_key_before_an_unfetched_reference_is_the_error_reported() -> None:
    spec_ = EnvSpec(
        env=(
            EnvVar("X", value_from=KeyRef(CM, "nope")),
            EnvVar("Y", value_from=KeyRef(SourceRef("secret", "gone"), "k")),
        )
    )
    with pytest.raises(KeyError, match="configmap settings has no key nope"):
        env.container_env(BASE, spec_, FETCHED, a_pod())


@pytest.mark.parametrize(
    ("command", "args", "argv"),
    [
        pytest.param(("python3", "-c", "pass"), (), ["python3", "-c", "pass"], id="the command runs as written"),
        pytest.param(("serve",), ("--port", "$(PORT)"), ["serve", "--port", "8080"], id="args follow, expanded"),
        pytest.param(("echo", "$(NOPE)"), (), ["echo", "$(NOPE)"], id="an undefined variable in argv stays"),
    ],
)
def test_the_command_line(command: tuple[str, ...], args: tuple[str, ...], argv: list[str]) -> None:
    assert env.command_line(command, args, {"PORT": "8080"}) == argv


def test_a_container_without_a_command_is_refused_since_no_image_is_pulled() -> None:
    with pytest.raises(ValueError, match="container web has no command"):
        env.require_command("web", ())
    env.require_command("web", ("python3",))


# ---- volumes: files, mounts and their order ----------------------------------------------------------
TOKEN = ServiceAccountToken("token", audience="ballast", expiration_seconds=600)


@pytest.mark.parametrize(
    ("volume", "needs"),
    [
        pytest.param(Volume("data"), [], id="an emptyDir needs nothing"),
        pytest.param(Volume("host", host_path="/srv"), [], id="a hostPath needs nothing"),
        pytest.param(Volume("cfg", sources=(DataFiles(CM),)), [CM], id="a configMap volume needs its config map"),
        pytest.param(
            Volume("all", sources=(TOKEN, DataFiles(SECRET), DownwardFile("name", "metadata.name"), DataFiles(CM))),
            [TOKEN, SECRET, CM],
            id="a projected volume needs its token and data in order",
        ),
        pytest.param(
            Volume("twice", sources=(DataFiles(CM), DataFiles(CM, (KeyToPath("MODE", "m"),)))),
            [CM],
            id="a config map projected twice is fetched once",
        ),
    ],
)
def test_what_a_volume_needs_fetched(volume: Volume, needs: list) -> None:
    assert volumes.volume_needs(volume) == needs


@pytest.mark.parametrize(
    ("items", "files"),
    [
        pytest.param((), [("MODE", b"fast"), ("LEVEL", b"3")], id="without items every key is a file"),
        pytest.param(
            (KeyToPath("MODE", "conf/mode.txt"),), [("conf/mode.txt", b"fast")], id="items pick keys and name the files"
        ),
        pytest.param((KeyToPath("NOPE", "x"),), [], id="an item whose key does not exist is skipped"),
    ],
)
def test_the_files_of_a_config_map_or_secret(items: tuple[KeyToPath, ...], files: list) -> None:
    assert volumes.select_items(FETCHED[CM], items) == files


@pytest.mark.parametrize(
    ("volume", "files"),
    [
        pytest.param(Volume("data"), [], id="an emptyDir holds no files"),
        pytest.param(
            Volume("s", sources=(DataFiles(SECRET),)),
            [("token", b"t0p")],
            id="a secret volume holds its decoded values",
        ),
        pytest.param(
            Volume("d", sources=(DownwardFile("labels", "metadata.labels['app']"), DownwardFile("empty"))),
            [("labels", b"web"), ("empty", b"")],
            id="downward API items are pod fields and an item without a field is empty",
        ),
        pytest.param(
            Volume("sa", sources=(TOKEN, DataFiles(CM, (KeyToPath("LEVEL", "level"),)))),
            [("token", b"jwt"), ("level", b"3")],
            id="a projected volume holds its token and its items in order",
        ),
    ],
)
def test_the_files_a_volume_holds(volume: Volume, files: list) -> None:
    assert volumes.volume_files(volume, FETCHED, {TOKEN: "jwt"}, a_pod()) == files


@pytest.mark.parametrize(
    "volume",
    [
        pytest.param(
            Volume("s", sources=(DataFiles(SourceRef("secret", "gone")),)),
            id="a volume whose secret was not fetched is not filled",
        ),
        pytest.param(Volume("sa", sources=(TOKEN,)), id="a volume whose token was not issued is not filled"),
    ],
)
def test_a_volume_whose_source_was_not_fetched_is_not_filled(volume: Volume) -> None:
    with pytest.raises(SourceNotFetched):
        volumes.volume_files(volume, FETCHED, {}, a_pod())


@pytest.mark.parametrize(
    ("mount_point", "path", "hidden"),
    [
        pytest.param("/tmp", "/tmp/project/.venv", True, id="a mount on /tmp hides a venv under /tmp"),
        pytest.param("/tmp", "/tmp", True, id="a mount hides the path it is made on"),
        pytest.param("/tmp/", "/tmp/x", True, id="a trailing slash on the mount point changes nothing"),
        pytest.param("/", "/opt/venv", True, id="a mount on / hides everything"),
        pytest.param("/tmp", "/tmpfoo/venv", False, id="a mount on /tmp does not hide /tmpfoo"),
        pytest.param("/data", "/tmp/venv", False, id="a mount elsewhere hides nothing"),
        pytest.param(
            "/tmp/project/.venv/cache", "/tmp/project/.venv", False, id="a mount below a path hides none of it"
        ),
    ],
)
def test_whether_a_mount_covers_a_path(mount_point: str, path: str, hidden: bool) -> None:
    assert volumes.covers(mount_point, path) is hidden


@pytest.mark.parametrize(
    ("mount_point", "hidden"),
    [
        pytest.param("/tmp", True, id="a mount that covers the agent's Python would hide the agent itself"),
        pytest.param("/var/lib", True, id="a mount that covers the agent's state would hide the agent itself"),
        pytest.param("/data", False, id="a mount that covers neither hides nothing of the agent"),
    ],
)
def test_whether_a_mount_would_hide_the_agent(mount_point: str, hidden: bool) -> None:
    assert volumes.would_hide(mount_point, ["/tmp/project/.venv", "/var/lib/ballast/node"]) is hidden


DIRS = {"cfg": "/state/pods/u/volumes/cfg", "data": "/state/pods/u/volumes/data"}


@pytest.mark.parametrize(
    ("mounts", "hidden", "planned", "skipped"),
    [
        pytest.param(
            [VolumeMount("cfg", "/etc/app", read_only=True)],
            {},
            [Mount("/state/pods/u/volumes/cfg", "/etc/app", True)],
            [],
            id="a volume is mounted from its directory at its mountPath",
        ),
        pytest.param(
            [VolumeMount("cfg", "/etc/app/mode.txt", sub_path="MODE")],
            {},
            [Mount("/state/pods/u/volumes/cfg/MODE", "/etc/app/mode.txt")],
            [],
            id="a subPath mounts one entry of the volume",
        ),
        pytest.param(
            [VolumeMount("data", "/tmp"), VolumeMount("cfg", "/etc/app")],
            {"/tmp": True},
            [Mount("/state/pods/u/volumes/cfg", "/etc/app")],
            [VolumeMount("data", "/tmp")],
            id="a mount that would hide the agent's program is left out",
        ),
    ],
)
def test_the_mounts_a_container_gets(
    mounts: list[VolumeMount], hidden: dict[str, bool], planned: list[Mount], skipped: list[VolumeMount]
) -> None:
    assert volumes.plan_mounts("web", mounts, DIRS, hidden) == (planned, skipped)


def test_a_mount_of_an_unknown_volume_is_refused_naming_both() -> None:
    with pytest.raises(ValueError, match="container web mounts unknown volume nope"):
        volumes.plan_mounts("web", [VolumeMount("nope", "/x")], DIRS, {})


@pytest.mark.parametrize(
    ("mounts", "order"),
    [
        pytest.param(
            [Mount("/state/data", "/state"), Mount("/state/cfg", "/etc/app")],
            ["/etc/app", "/state"],
            id="a mount that would hide another's source goes last",
        ),
        pytest.param(
            [Mount("/v/b", "/a/b/c"), Mount("/v/a", "/a")],
            ["/a", "/a/b/c"],
            id="shallower targets are mounted before deeper ones",
        ),
        pytest.param(
            [Mount("/v/x", "/x"), Mount("/v/y", "/y")], ["/x", "/y"], id="mounts at the same depth keep their order"
        ),
    ],
)
def test_the_order_mounts_are_made_in(mounts: list[Mount], order: list[str]) -> None:
    assert [m.target for m in volumes.mount_order(mounts)] == order


@pytest.mark.parametrize(
    ("target", "hides"),
    [
        pytest.param("/state", True, id="a target above another mount's source hides it"),
        pytest.param("/etc/app", False, id="a target above no other source hides nothing"),
    ],
)
def test_whether_a_mount_hides_a_source(target: str, hides: bool) -> None:
    mounts = [Mount("/state/data", "/state"), Mount("/state/cfg", "/etc/app")]
    assert volumes.hides_a_source(target, mounts) is hides


def test_a_container_without_mounts_runs_its_argv_as_it_is() -> None:
    assert volumes.in_mount_namespace(["python3", "-V"], [], "web") == ["python3", "-V"]


def test_a_container_with_mounts_runs_in_a_private_mount_namespace() -> None:
    argv = volumes.in_mount_namespace(
        ["python3", "-V"], [Mount("/v/cfg", "/etc/my app", read_only=True), Mount("/v/data", "/data")], "web"
    )
    assert argv[:6] == ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
    assert argv[7:] == ["web", "python3", "-V"]
    script = argv[6].splitlines()
    assert script[0] == "set -e"
    assert script[-1] == 'exec "$@"'
    assert "mount --bind /v/data /data" in script
    assert "mount --bind /v/cfg '/etc/my app'" in script
    assert "mount -o remount,ro,bind '/etc/my app'" in script
    assert "mount -o remount,ro,bind /data" not in script
    assert script.index("mount --bind /v/data /data") < script.index("mount --bind /v/cfg '/etc/my app'")


def test_read_only_remounts_come_after_every_mount_so_a_mount_point_inside_one_can_be_made() -> None:
    argv = volumes.in_mount_namespace(
        ["true"],
        [Mount("/v/cfg", "/etc/app", read_only=True), Mount("/pod/containers/web/termination-log-0", "/etc/app/msg")],
        "web",
    )
    script = argv[6].splitlines()
    assert script.index("mount -o remount,ro,bind /etc/app") > script.index(
        "mount --bind /pod/containers/web/termination-log-0 /etc/app/msg"
    )


def test_a_file_mount_point_is_created_only_when_missing_so_a_host_file_is_left_as_it_is() -> None:
    script = volumes.in_mount_namespace(["true"], [Mount("/pod/msg", "/var/run/msg")], "web")[6]
    assert "[ -e /var/run/msg ] || touch /var/run/msg" in script


# ---- termination: where a message file lives, which message is reported -----------------------------
POD_VOLUMES = "/state/pods/u/volumes"
SCRATCH = Mount(f"{POD_VOLUMES}/scratch", "/scratch")
CFG = Mount(f"{POD_VOLUMES}/cfg", "/etc/app", read_only=True)
HOST = Mount("/srv/shared", "/shared")


@pytest.mark.parametrize(
    ("path", "mounts", "place"),
    [
        pytest.param(
            "/scratch/termination-log",
            [SCRATCH],
            InVolume(f"{POD_VOLUMES}/scratch/termination-log", f"{POD_VOLUMES}/scratch"),
            id="a message path inside an emptyDir is the file at that place in the volume's directory",
        ),
        pytest.param(
            "/scratch/out/result.json",
            [SCRATCH],
            InVolume(f"{POD_VOLUMES}/scratch/out/result.json", f"{POD_VOLUMES}/scratch"),
            id="a message path deeper in a volume keeps its place below the volume",
        ),
        pytest.param(
            "/scratch/termination-log",
            [Mount(f"{POD_VOLUMES}/scratch/run-1", "/scratch")],
            InVolume(f"{POD_VOLUMES}/scratch/run-1/termination-log", f"{POD_VOLUMES}/scratch/run-1"),
            id="a message path inside a subPath mount is in that part of the volume",
        ),
        pytest.param(
            "/scratch//./termination-log",
            [Mount(f"{POD_VOLUMES}/scratch", "/scratch/")],
            InVolume(f"{POD_VOLUMES}/scratch/termination-log", f"{POD_VOLUMES}/scratch"),
            id="the message path and mount paths are cleaned before they are compared",
        ),
        pytest.param(
            "/scratch/cfg/msg",
            [Mount(f"{POD_VOLUMES}/cfg", "/scratch/cfg", read_only=True), SCRATCH],
            OwnFile("/scratch/cfg/msg"),
            id="of nested mounts the innermost decides: a read-only one inside an emptyDir",
        ),
        pytest.param(
            "/scratch/msg",
            [Mount(f"{POD_VOLUMES}/cfg", "/scratch/cfg", read_only=True), SCRATCH],
            InVolume(f"{POD_VOLUMES}/scratch/msg", f"{POD_VOLUMES}/scratch"),
            id="a mount beside the message path does not decide",
        ),
        pytest.param(
            "/etc/app/termination-log",
            [CFG],
            OwnFile("/etc/app/termination-log"),
            id="a message path inside a read-only volume is bind-mounted so the container can still write it",
        ),
        pytest.param(
            "/shared/termination-log",
            [HOST],
            OwnFile("/shared/termination-log"),
            id="a message path inside a hostPath volume is bind-mounted so no host file is emptied",
        ),
        pytest.param(
            "/scratch/termination-log",
            [Mount(f"{POD_VOLUMES}/scratch/log", "/scratch/termination-log")],
            OwnFile("/scratch/termination-log"),
            id="a message path that is a writable subPath mount's own path is bind-mounted over it, as a runtime does",
        ),
        pytest.param(
            "/var/run/termination-log",
            [SCRATCH],
            OwnFile("/var/run/termination-log"),
            id="a message path outside every volume is a file of this start bind-mounted there",
        ),
        pytest.param(
            "/devices/termination-log", [], OwnFile("/devices/termination-log"), id="a path under /devices is not /dev"
        ),
        pytest.param(
            "/dev/msgs/termination-log",
            [Mount(f"{POD_VOLUMES}/msgs", "/dev/msgs")],
            InVolume(f"{POD_VOLUMES}/msgs/termination-log", f"{POD_VOLUMES}/msgs"),
            id="a message path under /dev inside a volume mounted there is the volume's file",
        ),
    ],
)
def test_where_a_container_s_message_file_lives(path: str, mounts: list[Mount], place: MessageFile) -> None:
    assert termination.message_file(path, mounts, POD_VOLUMES) == place


@pytest.mark.parametrize(
    ("path", "mounts", "hides_agent", "why"),
    [
        pytest.param(
            "/dev/termination-log",
            [SCRATCH],
            False,
            "would be created in the host's /dev",
            id="the default /dev/termination-log gets no file: its mount point would be made in the host's /dev",
        ),
        pytest.param(
            "/dev/shm/ballast/msg",
            [],
            False,
            "host's /dev",
            id="any message path under /dev outside the volumes gets no file",
        ),
        pytest.param(
            "/etc/app", [CFG], False, "read-only mount point", id="a read-only volume's own mount path gets no file"
        ),
        pytest.param("termination-log", [], False, "not an absolute path", id="a relative message path gets no file"),
        pytest.param(
            "/scratch/../etc/passwd",
            [SCRATCH],
            False,
            "without ..",
            id="a message path climbing out of its volume with .. gets no file",
        ),
        pytest.param(
            "/opt/venv",
            [],
            True,
            "would hide the node agent",
            id="a message path whose mount would hide the agent's program gets no file",
        ),
    ],
)
def test_a_message_path_that_cannot_get_a_file_safely_gets_none_and_says_why(
    path: str, mounts: list[Mount], hides_agent: bool, why: str
) -> None:
    place = termination.message_file(path, mounts, POD_VOLUMES, hides_agent=hides_agent)
    assert isinstance(place, NoFile)
    assert why in place.reason


FILE, FALLBACK = termination.FILE, termination.FALLBACK_TO_LOGS_ON_ERROR
DIGEST = b'{"digest": "sha256:' + b"ab" * 32 + b'"}'


@pytest.mark.parametrize(
    ("policy", "code", "file", "output", "message"),
    [
        pytest.param(FILE, 0, DIGEST, None, DIGEST.decode(), id="the file's content is the message, byte for byte"),
        pytest.param(FILE, 0, b"", None, None, id="an empty file gives no message"),
        pytest.param(FILE, 0, None, None, None, id="no file gives no message"),
        pytest.param(FILE, 1, b"", b"Traceback\n", None, id="an empty file under File gives none even after a failure"),
        pytest.param(
            FALLBACK,
            1,
            b"",
            b"Traceback\nValueError: bad\n",
            "Traceback\nValueError: bad\n",
            id="an empty file and a failure under FallbackToLogsOnError take the output",
        ),
        pytest.param(
            FALLBACK,
            137,
            None,
            b"killed\n",
            "killed\n",
            id="no file and a failure under FallbackToLogsOnError take the output",
        ),
        pytest.param(
            FALLBACK,
            0,
            b"",
            b"done\n",
            None,
            id="a success under FallbackToLogsOnError with an empty file has no message",
        ),
        pytest.param(
            FALLBACK, 1, b"written", b"output\n", "written", id="a written file wins over the output after a failure"
        ),
        pytest.param(FALLBACK, 1, b"", b"", None, id="a failure with an empty file and no output has no message"),
        pytest.param(
            FILE,
            0,
            b"x" * 5000 + b"END",
            None,
            "x" * 4093 + "END",
            id="a message over 4096 bytes keeps its last 4096, as the kubelet reads it",
        ),
        pytest.param(FILE, 0, b"y" * 4096, None, "y" * 4096, id="a message of exactly 4096 bytes is whole"),
        pytest.param(FILE, 0, b"\xff ok", None, "\ufffd ok", id="bytes that are not UTF-8 read as U+FFFD"),
        pytest.param(
            FALLBACK,
            1,
            Unreadable("/p/msg: Is a directory"),
            b"output\n",
            "Error on reading termination log: /p/msg: Is a directory",
            id="an unreadable file reports why rather than the output",
        ),
    ],
)
def test_which_termination_message_is_reported(
    policy: str, code: int, file: bytes | Unreadable | None, output: bytes | None, message: str | None
) -> None:
    assert termination.termination_message(policy, code, file, output) == message


def numbered(lines: int, width: int = 0) -> bytes:
    return b"".join(f"line {i}".ljust(width).encode() + b"\n" for i in range(lines))


@pytest.mark.parametrize(
    ("output", "tail"),
    [
        pytest.param(numbered(3), numbered(3), id="an output of fewer than 80 lines is whole"),
        pytest.param(numbered(100), numbered(100)[len(numbered(20)) :], id="a longer output keeps its last 80 lines"),
        pytest.param(b"a\nb", b"a\nb", id="a last line without a newline counts as a line"),
        pytest.param(
            numbered(81)[:-1], numbered(81)[len(numbered(1)) : -1], id="80 lines end at the last one, newline or not"
        ),
        pytest.param(
            numbered(80, width=99), numbered(80, width=99)[-2048:], id="80 long lines keep only their last 2048 bytes"
        ),
        pytest.param(b"", b"", id="no output has no tail"),
    ],
)
def test_the_tail_of_a_container_s_output(output: bytes, tail: bytes) -> None:
    assert termination.log_tail(output) == tail


@pytest.mark.parametrize(
    ("policy", "code", "file", "wanted"),
    [
        pytest.param(
            FALLBACK, 2, b"", True, id="a failure with an empty file under FallbackToLogsOnError reads the log"
        ),
        pytest.param(FALLBACK, 2, b"x", False, id="a written file needs no log"),
        pytest.param(FALLBACK, 0, b"", False, id="a success needs no log"),
        pytest.param(FILE, 2, b"", False, id="the File policy never reads the log"),
        pytest.param(FALLBACK, 2, Unreadable("why"), False, id="an unreadable file is reported, not the log"),
    ],
)
def test_whether_the_log_is_read_for_the_message(
    policy: str, code: int, file: bytes | Unreadable | None, wanted: bool
) -> None:
    assert termination.wants_logs(policy, code, file) is wanted


# ---- probes: when to probe, what a result means ----------------------------------------------------
READINESS = Probe(HttpGet(8080), period_seconds=5, success_threshold=2, failure_threshold=3)
LIVENESS = Probe(TcpSocket(8080), period_seconds=7, failure_threshold=3)


@pytest.mark.parametrize(
    ("readiness", "liveness", "next_readiness", "next_liveness"),
    [
        pytest.param(None, None, 100.0, 100.0, id="without probes nothing is delayed"),
        pytest.param(
            replace(READINESS, initial_delay_seconds=3),
            replace(LIVENESS, initial_delay_seconds=20),
            103.0,
            120.0,
            id="each probe waits its initial delay after the start",
        ),
    ],
)
def test_a_started_container_is_unready_until_its_probes_say_otherwise(
    readiness: Probe | None, liveness: Probe | None, next_readiness: float, next_liveness: float
) -> None:
    state = probes.started(readiness, liveness, 100.0)
    assert state == ProbeState(ready=False, next_readiness=next_readiness, next_liveness=next_liveness)


@pytest.mark.parametrize(
    ("now", "running", "due"),
    [
        pytest.param(99.9, True, False, id="a probe is not run before its time"),
        pytest.param(100.0, True, True, id="a probe is run once its time has come"),
        pytest.param(150.0, False, False, id="a probe is not run while the container is not running"),
    ],
)
def test_whether_a_probe_is_due(now: float, running: bool, due: bool) -> None:
    assert probes.is_due(100.0, now, running) is due


@pytest.mark.parametrize(
    ("before", "passed", "after"),
    [
        pytest.param(
            ProbeState(ready=True, failures=1),
            False,
            ProbeState(ready=True, failures=2),
            id="a readiness probe below its failure threshold keeps the pod ready",
        ),
        pytest.param(
            ProbeState(ready=True, failures=2),
            False,
            ProbeState(ready=False, failures=3),
            id="the failure that reaches the failure threshold makes it unready",
        ),
        pytest.param(
            ProbeState(ready=False, successes=0),
            True,
            ProbeState(ready=False, successes=1),
            id="a pass below the success threshold leaves it unready",
        ),
        pytest.param(
            ProbeState(ready=False, successes=1, failures=0),
            True,
            ProbeState(ready=True, successes=2),
            id="the pass that reaches the success threshold makes it ready",
        ),
        pytest.param(
            ProbeState(ready=False, failures=5),
            True,
            ProbeState(ready=False, successes=1, failures=0),
            id="a pass forgets earlier failures",
        ),
        pytest.param(
            ProbeState(ready=True, successes=4),
            False,
            ProbeState(ready=True, successes=0, failures=1),
            id="a failure forgets earlier passes",
        ),
    ],
)
def test_readiness_after_a_probe(before: ProbeState, passed: bool, after: ProbeState) -> None:
    state = probes.after_readiness(READINESS, before, passed, 200.0)
    assert state == replace(after, next_readiness=205.0)


def test_one_pass_makes_a_container_ready_under_the_default_success_threshold() -> None:
    assert probes.after_readiness(Probe(HttpGet(80)), ProbeState(), True, 0.0).ready is True


@pytest.mark.parametrize(
    ("failures", "passed", "kills"),
    [
        pytest.param(0, False, False, id="a first liveness failure does not kill"),
        pytest.param(1, False, False, id="a liveness failure below its threshold does not kill"),
        pytest.param(2, False, True, id="the liveness failure that reaches the threshold kills the container"),
        pytest.param(2, True, False, id="a passing liveness probe forgets earlier failures and does not kill"),
    ],
)
def test_liveness_after_a_probe(failures: int, passed: bool, kills: bool) -> None:
    state = probes.after_liveness(LIVENESS, ProbeState(liveness_failures=failures), passed, 300.0)
    assert state.next_liveness == 307.0
    assert state.liveness_failures == (0 if passed else failures + 1)
    assert probes.liveness_kills(LIVENESS, state) is kills


def test_a_liveness_probe_leaves_readiness_alone() -> None:
    state = probes.after_liveness(LIVENESS, ProbeState(ready=True, successes=3), False, 0.0)
    assert (state.ready, state.successes) == (True, 3)


@pytest.mark.parametrize(
    ("port", "resolved"),
    [
        pytest.param(8080, 8080, id="a numeric port is that port"),
        pytest.param("9090", 9090, id="a port written as digits is that port"),
        pytest.param("http", 8000, id="a named port is the container port of that name"),
    ],
)
def test_a_probe_port(port: int | str, resolved: int) -> None:
    assert probes.resolve_port(port, {"http": 8000}) == resolved


def test_a_probe_on_an_undeclared_port_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no port named metrics"):
        probes.resolve_port("metrics", {"http": 8000})


@pytest.mark.parametrize(
    ("get", "url"),
    [
        pytest.param(HttpGet(80), "http://127.1.0.7:8080/", id="an httpGet probe asks the pod's IP at /"),
        pytest.param(
            HttpGet(80, path="/healthz", host="localhost", scheme="HTTPS"),
            "https://localhost:8080/healthz",
            id="an httpGet probe may name its host, path and scheme",
        ),
    ],
)
def test_the_url_an_http_probe_asks(get: HttpGet, url: str) -> None:
    assert probes.probe_url(get, "127.1.0.7", 8080) == url


# ---- node: the Node and its Lease ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cpus", "overrides", "expected"),
    [
        pytest.param(
            8,
            [],
            {"cpu": "8", "memory": "16Gi", "pods": "110", "nvidia.com/gpu": "1", "ephemeral-storage": "50Gi"},
            id="a node offers its CPUs and one GPU by default",
        ),
        pytest.param(None, [], node.DEFAULT_CAPACITY | {"cpu": "2"}, id="an unknown CPU count reads as 2"),
        pytest.param(
            4,
            ["nvidia.com/gpu=0", "example.com/fpga=2"],
            node.DEFAULT_CAPACITY | {"cpu": "4", "nvidia.com/gpu": "0", "example.com/fpga": "2"},
            id="--capacity replaces a default or adds a resource",
        ),
    ],
)
def test_the_node_capacity(cpus: int | None, overrides: list[str], expected: dict[str, str]) -> None:
    assert node.capacity(cpus, overrides) == expected


def test_the_node_reports_ready_with_all_its_capacity_allocatable() -> None:
    capacity = {"cpu": "2", "nvidia.com/gpu": "1"}
    node_status = node.node_status("n1", capacity, T0, kernel_version="6.1", boot_id="b")
    assert node_status["capacity"] == node_status["allocatable"] == capacity
    conditions = {c["type"]: c["status"] for c in node_status["conditions"]}
    assert conditions == {"Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False"}
    assert {c["lastHeartbeatTime"] for c in node_status["conditions"]} == {"2026-11-26T12:00:00Z"}
    assert node_status["nodeInfo"]["kernelVersion"] == "6.1"
    assert node_status["nodeInfo"]["bootID"] == "b"
    assert node_status["addresses"] == [
        {"type": "InternalIP", "address": "127.0.0.1"},
        {"type": "Hostname", "address": "n1"},
    ]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param("n1", "n1", True, id="a node keeps its machine ID across restarts"),
        pytest.param("n1", "n2", False, id="two nodes have different machine IDs"),
    ],
)
def test_the_machine_id_follows_the_node_name(a: str, b: str, same: bool) -> None:
    ids = [node.node_status(name, {}, T0, kernel_version="", boot_id="")["nodeInfo"]["machineID"] for name in (a, b)]
    assert (ids[0] == ids[1]) is same


def test_the_node_carries_the_labels_a_scheduler_matches_on() -> None:
    body = node.node_body("n1")
    assert body["metadata"]["name"] == "n1"
    assert body["metadata"]["labels"]["kubernetes.io/hostname"] == "n1"
    assert body["metadata"]["labels"]["kubernetes.io/os"] == "linux"


def test_the_lease_is_owned_by_the_node_and_renewed_now() -> None:
    lease = node.lease_body("n1", "uid-1", T0 + dt.timedelta(microseconds=5))
    assert lease["spec"]["renewTime"] == "2026-11-26T12:00:00.000005Z"
    assert lease["spec"]["holderIdentity"] == "n1"
    assert lease["spec"]["leaseDurationSeconds"] == node.LEASE_SECONDS
    assert lease["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "uid-1"}]


# ---- spec: the client's models read into the pure inputs --------------------------------------------
def test_a_container_spec_is_read_with_the_kubernetes_defaults() -> None:
    parsed = spec.container(client.V1Container(name="web", command=["serve"]))
    assert parsed == spec.Container(name="web", image="local", command=("serve",))


@pytest.mark.parametrize(
    ("model", "path", "policy"),
    [
        pytest.param(
            client.V1Container(name="web", command=["serve"]),
            "/dev/termination-log",
            "File",
            id="a container's message goes to /dev/termination-log under File by default",
        ),
        pytest.param(
            client.V1Container(
                name="train",
                command=["train"],
                termination_message_path="/scratch/termination-log",
                termination_message_policy="FallbackToLogsOnError",
            ),
            "/scratch/termination-log",
            "FallbackToLogsOnError",
            id="a container's termination message path and policy are read",
        ),
    ],
)
def test_a_container_s_termination_message_settings_are_read(model: Any, path: str, policy: str) -> None:
    parsed = spec.container(model)
    assert (parsed.termination_message_path, parsed.termination_message_policy) == (path, policy)


def test_a_container_spec_is_read_with_its_env_mounts_probes_and_ports() -> None:
    container = client.V1Container(
        name="web",
        image="python:3.11",
        command=["serve"],
        args=["--port", "$(PORT)"],
        working_dir="/srv",
        ports=[client.V1ContainerPort(name="http", container_port=8080), client.V1ContainerPort(container_port=9)],
        env_from=[
            client.V1EnvFromSource(prefix="CFG_", config_map_ref=client.V1ConfigMapEnvSource(name="settings")),
            client.V1EnvFromSource(secret_ref=client.V1SecretEnvSource(name="creds", optional=True)),
        ],
        env=[
            client.V1EnvVar(name="PORT", value="8080"),
            client.V1EnvVar(
                name="T",
                value_from=client.V1EnvVarSource(secret_key_ref=client.V1SecretKeySelector(name="creds", key="t")),
            ),
            client.V1EnvVar(
                name="M",
                value_from=client.V1EnvVarSource(
                    config_map_key_ref=client.V1ConfigMapKeySelector(name="settings", key="MODE", optional=True)
                ),
            ),
            client.V1EnvVar(
                name="ME",
                value_from=client.V1EnvVarSource(field_ref=client.V1ObjectFieldSelector(field_path="metadata.name")),
            ),
            client.V1EnvVar(
                name="CPU",
                value_from=client.V1EnvVarSource(
                    resource_field_ref=client.V1ResourceFieldSelector(resource="limits.cpu")
                ),
            ),
        ],
        volume_mounts=[client.V1VolumeMount(name="cfg", mount_path="/etc/app", sub_path="x", read_only=True)],
        readiness_probe=client.V1Probe(http_get=client.V1HTTPGetAction(port="http"), period_seconds=1),
        # The model calls the field `var_exec`; only its alias `exec` sets it.
        liveness_probe=client.V1Probe(**{"exec": client.V1ExecAction(command=["true"])}, failure_threshold=5),
    )
    parsed = spec.container(container)
    assert (parsed.image, parsed.args, parsed.working_dir) == ("python:3.11", ("--port", "$(PORT)"), "/srv")
    assert parsed.ports == {"http": 8080}
    assert parsed.env == EnvSpec(
        env_from=(EnvFrom(CM, "CFG_"), EnvFrom(OPTIONAL_SECRET)),
        env=(
            EnvVar("PORT", "8080"),
            EnvVar("T", value_from=KeyRef(SECRET, "t")),
            EnvVar("M", value_from=KeyRef(SourceRef("configMap", "settings", optional=True), "MODE")),
            EnvVar("ME", value_from=FieldRef("metadata.name")),
            EnvVar("CPU", value_from=ResourceFieldRef()),
        ),
    )
    assert parsed.mounts == (VolumeMount("cfg", "/etc/app", "x", True),)
    assert parsed.readiness == Probe(HttpGet("http"), period_seconds=1)
    assert parsed.liveness == Probe(ExecAction(("true",)), failure_threshold=5)


@pytest.mark.parametrize(
    ("model", "volume"),
    [
        pytest.param(
            client.V1Volume(name="d", empty_dir=client.V1EmptyDirVolumeSource()), Volume("d"), id="an emptyDir is empty"
        ),
        pytest.param(
            client.V1Volume(name="h", host_path=client.V1HostPathVolumeSource(path="/srv")),
            Volume("h", host_path="/srv"),
            id="a hostPath is the host's directory",
        ),
        pytest.param(
            client.V1Volume(
                name="c",
                config_map=client.V1ConfigMapVolumeSource(
                    name="settings", items=[client.V1KeyToPath(key="MODE", path="m")]
                ),
            ),
            Volume("c", sources=(DataFiles(CM, (KeyToPath("MODE", "m"),)),)),
            id="a configMap volume holds its items",
        ),
        pytest.param(
            client.V1Volume(name="s", secret=client.V1SecretVolumeSource(secret_name="creds", optional=True)),
            Volume("s", sources=(DataFiles(OPTIONAL_SECRET),)),
            id="a secret volume names its secret by secretName",
        ),
        pytest.param(
            client.V1Volume(
                name="p",
                projected=client.V1ProjectedVolumeSource(
                    sources=[
                        client.V1VolumeProjection(
                            service_account_token=client.V1ServiceAccountTokenProjection(
                                path="token", audience="ballast"
                            )
                        ),
                        client.V1VolumeProjection(secret=client.V1SecretProjection(name="creds")),
                        client.V1VolumeProjection(
                            downward_api=client.V1DownwardAPIProjection(
                                items=[client.V1DownwardAPIVolumeFile(path="ns")]
                            )
                        ),
                    ]
                ),
            ),
            Volume("p", sources=(ServiceAccountToken("token", "ballast", 3600), DataFiles(SECRET), DownwardFile("ns"))),
            id="a projected volume keeps its sources in order, a token lasting an hour by default",
        ),
    ],
)
def test_a_volume_spec_is_read(model: Any, volume: Volume) -> None:
    assert spec.volume(model) == volume


@pytest.mark.parametrize(
    ("pod_spec", "service_account", "policy"),
    [
        pytest.param(
            client.V1PodSpec(containers=[]), "default", "Always", id="a pod runs as default and restarts Always"
        ),
        pytest.param(
            client.V1PodSpec(containers=[], service_account_name="trainer", restart_policy="Never"),
            "trainer",
            "Never",
            id="a pod names its service account and restart policy",
        ),
    ],
)
def test_the_pod_facts_and_restart_policy(pod_spec: Any, service_account: str, policy: str) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="web-1", namespace="shop", uid="u-1", labels={"app": "web"}), spec=pod_spec
    )
    facts = spec.pod_facts(pod, "ballast-node", "127.1.0.7")
    assert facts == a_pod(service_account=service_account, labels={"app": "web"}, annotations={})
    assert spec.restart_policy(pod) == policy


# ---- the pure modules stay pure ----------------------------------------------------------------------
PURE = ["env", "volumes", "probes", "status", "lifecycle", "node", "termination"]
ALLOWED_IMPORTS = {"__future__", "re", "shlex", "enum", "uuid", "datetime", "dataclasses", "collections.abc", "typing"}
PACKAGE = Path(spec.__file__).parent


@pytest.mark.parametrize("module", [pytest.param(m, id=f"the {m} module does no I/O and reads no clock") for m in PURE])
def test_the_pure_modules_import_no_io_and_read_no_clock(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    for found in ast.walk(tree):
        if isinstance(found, ast.ImportFrom) and found.level:
            assert found.module in PURE, f"{module} imports .{found.module}"
        elif isinstance(found, ast.ImportFrom):
            allowed = found.module in ALLOWED_IMPORTS or (found.module, [a.name for a in found.names]) == (
                "pathlib",
                ["PurePosixPath"],
            )
            assert allowed, f"{module} imports from {found.module}"
        elif isinstance(found, ast.Import):
            assert {a.name for a in found.names} <= ALLOWED_IMPORTS, f"{module} imports {found.names[0].name}"
        elif isinstance(found, ast.Attribute):
            assert found.attr not in {"now", "today", "utcnow", "monotonic", "uuid4"}, f"{module} reads {found.attr}"


def test_an_exit_not_yet_collected_is_reported_as_running_not_as_a_failure() -> None:
    # The agent collects exits, then reports; a process that ends between the two used to be sent
    # as a Failed pod (waiting, no exit code), which the Job controller counted as a failure.
    entry = status.container_status(running(running=False))
    assert "running" in entry["state"] and entry["started"] is True
