"""The local cluster is a real Kubernetes control plane: the real controllers act on what the node agent reports."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ballast_dev.testing.kube import eventually

PY = sys.executable


def a_job(name: str, code: str, *, backoff_limit: int = 0, restart: str = "Never", **pod_extra) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "spec": {
                    "restartPolicy": restart,
                    "containers": [{"name": "main", "image": "python:3.11", "command": ["python3", "-c", code]}],
                    **pod_extra,
                }
            },
        },
    }


def job_condition(kube, namespace: str, name: str) -> str | None:
    job = client.BatchV1Api(kube).read_namespaced_job(name, namespace)
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return str(condition.type)
    return None


def pod_log(cluster, namespace: str, pod: str) -> str:
    files = sorted((Path(cluster.state_dir) / "node" / "logs").glob(f"{namespace}_{pod}_*.log"))
    return "".join(f.read_text() for f in files)


def test_a_job_running_a_python_one_liner_is_marked_complete_by_the_job_controller(kube, namespace, cluster):
    client.BatchV1Api(kube).create_namespaced_job(namespace, a_job("hello", "print('hello from a pod')"))
    assert eventually(lambda: job_condition(kube, namespace, "hello"), 60, what="job finished") == "Complete"
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector="job-name=hello").items
    assert [p.status.phase for p in pods] == ["Succeeded"]
    assert pods[0].status.container_statuses[0].state.terminated.exit_code == 0
    assert "hello from a pod" in pod_log(cluster, namespace, pods[0].metadata.name)


def test_a_failing_job_is_retried_up_to_its_backoff_limit_then_failed(kube, namespace):
    client.BatchV1Api(kube).create_namespaced_job(
        namespace, a_job("broken", "import sys; sys.exit(3)", backoff_limit=2)
    )
    assert eventually(lambda: job_condition(kube, namespace, "broken"), 120, what="job finished") == "Failed"
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector="job-name=broken").items
    assert len(pods) == 3  # the first try and two retries
    assert {p.status.container_statuses[0].state.terminated.exit_code for p in pods} == {3}
    job = client.BatchV1Api(kube).read_namespaced_job("broken", namespace)
    assert next(c for c in job.status.conditions if c.type == "Failed").reason == "BackoffLimitExceeded"


def terminated_state(kube, namespace: str, job: str):
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    assert len(pods) == 1
    return pods[0].status.container_statuses[0].state.terminated


def with_scratch(job: dict, **container_extra) -> dict:
    """`job` with an emptyDir mounted at /scratch in its container, which also gets `container_extra`."""
    pod = job["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    pod["containers"][0].update(volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}], **container_extra)
    return job


def test_a_job_reports_the_digest_its_container_wrote_as_its_termination_message(kube, namespace):
    digest = "sha256:" + "ab" * 32
    code = f"import json; open('/scratch/termination-log', 'w').write(json.dumps({{'digest': {digest!r}}}))"
    job = with_scratch(a_job("digest", code), terminationMessagePath="/scratch/termination-log")
    client.BatchV1Api(kube).create_namespaced_job(namespace, job)
    assert eventually(lambda: job_condition(kube, namespace, "digest"), 60, what="job finished") == "Complete"
    terminated = terminated_state(kube, namespace, "digest")
    assert terminated.exit_code == 0
    assert terminated.message == f'{{"digest": "{digest}"}}'


def test_a_failing_container_with_fallback_to_logs_on_error_reports_the_tail_of_its_output(kube, namespace):
    code = "import sys\nfor i in range(100): print(f'step {i}')\nsys.exit(3)"
    job = with_scratch(
        a_job("fallback", code),
        terminationMessagePath="/scratch/termination-log",
        terminationMessagePolicy="FallbackToLogsOnError",
    )
    client.BatchV1Api(kube).create_namespaced_job(namespace, job)
    assert eventually(lambda: job_condition(kube, namespace, "fallback"), 60, what="job finished") == "Failed"
    terminated = terminated_state(kube, namespace, "fallback")
    assert terminated.exit_code == 3
    assert terminated.message == "".join(f"step {i}\n" for i in range(20, 100))  # the last 80 lines


def test_a_message_path_in_a_read_only_volume_is_a_file_of_its_own_the_container_can_write(kube, namespace):
    client.CoreV1Api(kube).create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {"a": "1"}})
    job = a_job("readonly", "open('/etc/ballast-test/termination-log', 'w').write('written')")
    pod = job["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "cfg", "configMap": {"name": "c"}}]
    pod["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/ballast-test", "readOnly": True}]
    pod["containers"][0]["terminationMessagePath"] = "/etc/ballast-test/termination-log"
    client.BatchV1Api(kube).create_namespaced_job(namespace, job)
    assert eventually(lambda: job_condition(kube, namespace, "readonly"), 60, what="job finished") == "Complete"
    assert terminated_state(kube, namespace, "readonly").message == "written"


def test_a_container_writing_nothing_under_the_default_path_reports_no_message(kube, namespace):
    host_file = Path("/dev/termination-log")
    existed = host_file.exists()
    client.BatchV1Api(kube).create_namespaced_job(namespace, a_job("quiet", "print('no message')"))
    assert eventually(lambda: job_condition(kube, namespace, "quiet"), 60, what="job finished") == "Complete"
    terminated = terminated_state(kube, namespace, "quiet")
    assert terminated.message is None
    assert host_file.exists() is existed  # the host's /dev is left alone


def a_server_deployment(name: str, *, greeting: str = "one", ready_path: str = "/") -> dict:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "web",
                            "image": "python:3.11",
                            "command": ["python3", "-m", "http.server", "8080", "--bind", "$(POD_IP)"],
                            "env": [
                                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                {"name": "GREETING", "value": greeting},
                            ],
                            "readinessProbe": {"httpGet": {"path": ready_path, "port": 8080}, "periodSeconds": 1},
                        }
                    ],
                },
            },
        },
    }


def available(kube, namespace: str, name: str) -> bool:
    deployment = client.AppsV1Api(kube).read_namespaced_deployment(name, namespace)
    status = deployment.status
    return bool(
        status.observed_generation == deployment.metadata.generation
        and status.updated_replicas == deployment.spec.replicas
        and status.available_replicas == deployment.spec.replicas
        and not (status.replicas or 0) > deployment.spec.replicas
        and any(c.type == "Available" and c.status == "True" for c in status.conditions or [])
    )


def test_a_deployment_rolls_out_and_rolls_again_on_an_env_change(kube, namespace):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, a_server_deployment("web"))
    eventually(lambda: available(kube, namespace, "web"), 60, what="first rollout")
    first = {p.metadata.name for p in client.CoreV1Api(kube).list_namespaced_pod(namespace).items}
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": "GREETING", "value": "two"}]}]}}}
    }
    apps.patch_namespaced_deployment("web", namespace, patch)
    eventually(lambda: available(kube, namespace, "web"), 60, what="second rollout")

    def only_new_pods() -> set[str]:
        pods = client.CoreV1Api(kube).list_namespaced_pod(namespace).items
        names = {p.metadata.name for p in pods}
        return names if names and not names & first else set()

    new = eventually(only_new_pods, 60, what="old pod gone")
    pod = client.CoreV1Api(kube).read_namespaced_pod(next(iter(new)), namespace)
    assert {e.name: e.value for e in pod.spec.containers[0].env}["GREETING"] == "two"
    assert pod.status.pod_ip.startswith("127.1.")


def test_a_failing_readiness_probe_keeps_a_deployment_from_available(kube, namespace):
    client.AppsV1Api(kube).create_namespaced_deployment(
        namespace, a_server_deployment("never-ready", ready_path="/no-such-page")
    )

    def running_but_unready() -> bool:
        pods = client.CoreV1Api(kube).list_namespaced_pod(namespace).items
        return bool(pods) and pods[0].status.phase == "Running" and pods[0].status.container_statuses[0].started

    eventually(running_but_unready, 60, what="pod running")
    time.sleep(5)  # several probe periods
    assert not available(kube, namespace, "never-ready")
    pod = client.CoreV1Api(kube).list_namespaced_pod(namespace).items[0]
    assert pod.status.container_statuses[0].ready is False


def test_secrets_config_maps_and_the_downward_api_reach_the_container(kube, namespace, cluster):
    core = client.CoreV1Api(kube)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"token": "t0p"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {"greeting.txt": "hi"}})
    code = "import os; print(os.environ['TOKEN'], os.environ['ME'], open('/etc/ballast-test/greeting.txt').read())"
    job = a_job(
        "wiring",
        code,
        volumes=[{"name": "cfg", "configMap": {"name": "c"}}],
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
        {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    container["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/ballast-test"}]
    client.BatchV1Api(kube).create_namespaced_job(namespace, job)
    assert eventually(lambda: job_condition(kube, namespace, "wiring"), 60, what="job finished") == "Complete"
    pod = core.list_namespaced_pod(namespace, label_selector="job-name=wiring").items[0]
    assert f"t0p {pod.metadata.name} hi" in pod_log(cluster, namespace, pod.metadata.name)


def test_a_pod_asking_for_a_gpu_is_scheduled_on_the_node(kube, namespace):
    job = a_job("gpu", "print('trained')")
    job["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    client.BatchV1Api(kube).create_namespaced_job(namespace, job)
    assert eventually(lambda: job_condition(kube, namespace, "gpu"), 60, what="job finished") == "Complete"


def test_a_deleted_pod_gets_sigterm_then_its_grace_period(kube, namespace, cluster):
    core = client.CoreV1Api(kube)
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('got SIGTERM', flush=True), sys.exit(0)))\n"
        "print('up', flush=True)\n"
        "time.sleep(600)"
    )
    pod = {
        "metadata": {"name": "sleeper"},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 10,
            "containers": [{"name": "main", "image": "python:3.11", "command": ["python3", "-u", "-c", code]}],
        },
    }
    core.create_namespaced_pod(namespace, pod)
    eventually(lambda: "up" in pod_log(cluster, namespace, "sleeper"), 60, what="pod started")
    started = time.monotonic()
    core.delete_namespaced_pod("sleeper", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("sleeper", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    eventually(gone, 30, what="pod deleted")
    assert time.monotonic() - started < 9  # it stopped on SIGTERM, not at the SIGKILL deadline
    assert "got SIGTERM" in pod_log(cluster, namespace, "sleeper")


def test_the_generated_crds_install_and_reject_invalid_objects_with_their_message(kube, namespace):
    custom = client.CustomObjectsApi(kube)
    digest = "sha256:" + "ab" * 32
    pool = {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "FineTunePool",
        "metadata": {"name": "invoices"},
        "spec": {
            "classes": ["title", "date"],
            "objectStore": {"endpoint": "127.0.0.1:9000", "bucket": "ballast", "credentialsSecretRef": {"name": "s"}},
            "anchor": {"trainManifest": "anchor/train.txt", "testManifest": "anchor/test.txt"},
            "baseModel": {"version": "base_v1", "uri": "s3://ballast/models/base_v1.pt", "digest": digest},
        },
    }
    created = custom.create_namespaced_custom_object("ballast.dev", "v1alpha1", namespace, "finetunepools", pool)
    # The apiserver applied the seed's defaults from the generated schema.
    assert created["spec"]["triggers"]["minNewSamples"] == 50
    assert created["spec"]["training"]["epochs"] == 10
    assert created["spec"]["mixing"]["oldSampleCap"] == 3000

    def rejected(body: dict, plural: str = "finetunepools") -> str:
        with pytest.raises(ApiException) as caught:
            custom.create_namespaced_custom_object("ballast.dev", "v1alpha1", namespace, plural, body)
        assert caught.value.status == 422
        return str(caught.value.body)

    too_few = {**pool, "metadata": {"name": "few"}, "spec": {**pool["spec"], "triggers": {"minNewSamples": 10}}}
    assert "spec.triggers.minNewSamples" in rejected(too_few)
    unordered = {
        **pool,
        "metadata": {"name": "unordered"},
        "spec": {**pool["spec"], "gates": {"regression": {"passBelow": 5, "rejectAbove": 3}}},
    }
    assert "passBelow must be below rejectAbove" in rejected(unordered)
    falling = {
        **pool,
        "metadata": {"name": "falling"},
        "spec": {
            **pool["spec"],
            "mixing": {"table": [{"newSamples": 10, "multiplier": 50}, {"newSamples": 20, "multiplier": 5}]},
        },
    }
    assert "old-sample counts must not decrease" in rejected(falling)
    nothing_to_judge = {
        **pool,
        "metadata": {"name": "nothing-to-judge"},
        "spec": {**pool["spec"], "gates": {"newSamples": {"judgeOn": "heldOut", "holdoutShare": 0}}},
    }
    refusal = rejected(nothing_to_judge)
    assert "judgeOn: heldOut needs holdoutShare" in refusal and "spec.gates.newSamples" in refusal
    held_out = {
        **pool,
        "metadata": {"name": "held-out"},
        "spec": {**pool["spec"], "gates": {"newSamples": {"judgeOn": "heldOut", "holdoutShare": 0.3}}},
    }
    custom.create_namespaced_custom_object("ballast.dev", "v1alpha1", namespace, "finetunepools", held_out)
    blind_gate3 = {
        **pool,
        "metadata": {"name": "blind-gate3"},
        "spec": {**pool["spec"], "gates": {"abComparison": {"enabled": True}}},
    }
    refusal = rejected(blind_gate3)
    assert "enabled needs auditManifest" in refusal and "spec.gates.abComparison" in refusal
    audited = {
        **pool,
        "metadata": {"name": "audited"},
        "spec": {**pool["spec"], "gates": {"abComparison": {"enabled": True, "auditManifest": "audit/m.txt"}}},
    }
    custom.create_namespaced_custom_object("ballast.dev", "v1alpha1", namespace, "finetunepools", audited)
    uneven = {
        **pool,
        "metadata": {"name": "uneven"},
        "spec": {**pool["spec"], "training": {"gpus": 4, "batch": 10}},
    }
    assert "training.batch must be a multiple of training.gpus" in rejected(uneven)
    four_gpus = {**pool, "metadata": {"name": "four-gpus"}, "spec": {**pool["spec"], "training": {"gpus": 4}}}
    created = custom.create_namespaced_custom_object("ballast.dev", "v1alpha1", namespace, "finetunepools", four_gpus)
    assert (created["spec"]["training"]["batch"], created["spec"]["training"]["amp"]) == (16, "auto")

    run = {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": "chained"},
        "spec": {"pool": "invoices", "baseModel": {**pool["spec"]["baseModel"], "version": "ft_v1.1"}},
    }
    assert "spec.baseModel.version" in rejected(run, "finetuneruns")

    run["spec"]["baseModel"]["version"] = "base_v1"
    run["metadata"]["name"] = "ok"
    custom.create_namespaced_custom_object("ballast.dev", "v1alpha1", namespace, "finetuneruns", run)
    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(
            "ballast.dev", "v1alpha1", namespace, "finetuneruns", "ok", {"spec": {"training": {"epochs": 50}}}
        )
    assert "spec is immutable except approval" in str(caught.value.body)
    # Approval is the one field that may change (once the run is a Review, by the approver in their
    # own name: the admission policy's rules, tested in test_trust.py).
    model = {**pool["spec"]["baseModel"], "version": "ft_v1.1"}
    custom.patch_namespaced_custom_object_status(
        "ballast.dev", "v1alpha1", namespace, "finetuneruns", "ok", {"status": {"verdict": "Review", "model": model}}
    )
    wire = {"by": "ballast-admin", "at": "2026-11-26T12:00:00Z", "reason": "noise", "modelDigest": model["digest"]}
    patched = custom.patch_namespaced_custom_object(
        "ballast.dev", "v1alpha1", namespace, "finetuneruns", "ok", {"spec": {"approval": wire}}
    )
    assert patched["spec"]["approval"]["by"] == "ballast-admin"


def test_a_service_account_token_without_rights_gets_403_and_works_after_a_role_binding(kube, namespace, cluster):
    core = client.CoreV1Api(kube)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    token = core.create_namespaced_service_account_token(
        "reader", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    ).status.token
    configuration = client.Configuration()
    configuration.host = cluster.apiserver_url
    configuration.ssl_ca_cert = str(Path(cluster.state_dir) / "pki" / "ca.crt")
    configuration.api_key = {"authorization": f"Bearer {token}"}
    as_reader = client.CoreV1Api(client.ApiClient(configuration))
    with pytest.raises(ApiException) as caught:
        as_reader.list_namespaced_config_map(namespace)
    assert caught.value.status == 403
    rbac = client.RbacAuthorizationV1Api(kube)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "cm-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "cm-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )

    def allowed() -> bool:
        try:
            as_reader.list_namespaced_config_map(namespace)
        except ApiException:
            return False
        return True

    eventually(allowed, 15, what="RBAC grant")


def test_minio_put_get_list(store, bucket):
    store.put_object(bucket, "anchor/a.txt", io.BytesIO(b"alpha"), 5)
    store.put_object(bucket, "anchor/b.txt", io.BytesIO(b"beta"), 4)
    names = [o.object_name for o in store.list_objects(bucket, prefix="anchor/", recursive=True)]
    assert names == ["anchor/a.txt", "anchor/b.txt"]
    assert store.get_object(bucket, "anchor/b.txt").read() == b"beta"


def test_down_leaves_no_process_and_no_port_behind(tmp_path):
    from ballast_dev.cluster import plane

    info = plane.up(tmp_path / "second", log=lambda _m: None)
    pids = [p.pid for p in info.processes]
    ports = [port for p in info.processes for port in p.ports]
    assert all(plane.is_alive(pid) for pid in pids)
    assert plane.down(tmp_path / "second", log=lambda _m: None) == []
    assert not any(plane.is_alive(pid) for pid in pids)
    assert not any(plane.port_open(port) for port in ports)
