"""The Helm chart: lint, render, schema, and a real install whose operator runs a whole fine-tune under its own RBAC."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ballast_dev.cluster import build
from ballast_dev.testing.datasets import write_pool_samples
from ballast_dev.testing.kube import eventually
from tests.integration.test_operator import (
    LENIENT,
    create,
    pool_status,
    release_status,
    run_phase,
    served_version,
    serving_deployment,
    start_pool,
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ballast"
KUBE_VERSION = build.KUBERNETES_VERSION.removeprefix("v")


def helm(*args: str, kubeconfig: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    command = [str(build.binary("helm")), *args]
    if kubeconfig:
        command += ["--kubeconfig", kubeconfig]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if check:
        assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed


def render(*sets: str) -> list[dict]:
    """What `helm install` applies (`helm test`'s hooks apart: see `helm_test_hooks`)."""
    args = ["template", "ballast", str(CHART), "--namespace", "ops", "--kube-version", KUBE_VERSION, "--skip-tests"]
    for value in sets:
        args += ["--set", value]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def helm_test_hooks(*sets: str) -> list[dict]:
    """What `helm test` creates."""
    args = [
        "template",
        "ballast",
        str(CHART),
        "--namespace",
        "ops",
        "--show-only",
        "templates/tests/check-install.yaml",
    ]
    for value in sets:
        args += ["--set", value]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def test_the_built_helm_knows_its_version_and_a_kubernetes_the_chart_supports():
    # Unstamped, helm said "v3.22" and assumed Kubernetes v1.20: the chart's kubeVersion (>=1.30) failed.
    assert helm("version", "--template", "{{ .Version }}").stdout == build.HELM_VERSION
    helm("template", "ballast", str(CHART))
    helm("lint", str(CHART))


def test_helm_lint_passes_for_default_and_non_default_values():
    helm("lint", str(CHART), "--kube-version", KUBE_VERSION)
    helm(
        "lint",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "serve.enabled=true",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "serve.podMonitor.enabled=true",
        "--set",
        "monitoring.labels.release=kube-prometheus-stack",
        "--set",
        "watchNamespaces={team-a,team-b}",
    )


def test_the_default_render_is_least_privilege_and_secure():
    documents = render()
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == [
        "ClusterRole",
        "ClusterRole",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "Deployment",
        "KopfPeering",
        "NetworkPolicy",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    # Nothing cluster-wide is granted: the ClusterRoles are for people, bound per namespace by them.
    assert not [d for d in documents if d["kind"] == "ClusterRoleBinding"]
    people = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ClusterRole"}
    assert sorted(people) == ["ballast-approver", "ballast-reviewer"]
    assert {v for r in people["ballast-reviewer"]["rules"] for v in r["verbs"]} == {"get", "list", "create"}
    assert "approve" in {v for r in people["ballast-approver"]["rules"] for v in r["verbs"]}
    policy = next(d for d in documents if d["kind"] == "ValidatingAdmissionPolicy")
    assert policy["spec"]["failurePolicy"] == "Fail"
    # The trainer Jobs may reach only DNS and the object store's private addresses, nothing else.
    jobs = next(
        d for d in documents if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "ballast-trainer-jobs"
    )
    assert jobs["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in jobs["spec"]
    egress_ports = sorted(p["port"] for rule in jobs["spec"]["egress"] for p in rule["ports"])
    assert egress_ports == [53, 53, 443, 9000]
    assert all("0.0.0.0/0" not in str(rule) for rule in jobs["spec"]["egress"])
    role = next(d for d in documents if d["kind"] == "Role")
    secrets = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secrets == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["ballast-store"], "verbs": ["get"]}
    ]
    verbs = {v for r in role["rules"] for v in r["verbs"]}
    assert "delete" not in verbs and "*" not in verbs
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    token = next(e for e in container["env"] if e["name"] == "BALLAST_WEBHOOK_TOKEN")
    assert "secretKeyRef" in token["valueFrom"]  # never a literal


def test_non_default_values_render_monitoring_serving_and_one_role_per_namespace():
    documents = render(
        "serve.enabled=true",
        "serve.pool=invoices",
        "serviceMonitor.enabled=true",
        "prometheusRule.enabled=true",
        "grafanaDashboard.enabled=true",
        "watchNamespaces={team-a,team-b}",
    )
    kinds = [d["kind"] for d in documents]
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= set(kinds)
    assert sorted(d["metadata"]["namespace"] for d in documents if d["kind"] == "Role") == ["team-a", "team-b"]
    rule = next(d for d in documents if d["kind"] == "PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert alerts == [
        "BallastClassDetectionRateLow",
        "BallastConfidenceDrift",
        "BallastUserFailuresRising",
        "BallastLatencyHigh",
        "BallastOperatorDown",
        "BallastReconcileErrors",
        "BallastRunFailed",
        "BallastReleaseBlocked",
        "BallastModelDrift",
        "BallastReviewWaiting",
    ]
    serve = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "ballast-serve")
    container = serve["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["ballast-trainer", "serve"]
    # Its model comes only from the ModelRelease's ConfigMap: nothing in the manifest for Git to restore.
    assert container["envFrom"] == [{"configMapRef": {"name": "ballast-serve-model"}}]
    assert not {e["name"] for e in container["env"]} & {
        "BALLAST_MODEL_URI",
        "BALLAST_MODEL_DIGEST",
        "BALLAST_MODEL_VERSION",
    }


MONITORING = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def test_extra_monitoring_labels_reach_the_service_monitor_pod_monitor_and_prometheus_rule():
    documents = render(
        "serviceMonitor.enabled=true",
        "prometheusRule.enabled=true",
        "serve.podMonitor.enabled=true",
        "monitoring.labels.release=kube-prometheus-stack",
        "monitoring.labels.team=ml",
    )
    monitoring = [d for d in documents if d["kind"] in MONITORING]
    assert {d["kind"] for d in monitoring} == MONITORING
    for document in monitoring:
        labels = document["metadata"]["labels"]
        assert labels["release"] == "kube-prometheus-stack" and labels["team"] == "ml", document["kind"]
        assert labels["app.kubernetes.io/name"] == "ballast", document["kind"]
    assert not any("release" in d["metadata"].get("labels", {}) for d in render("serviceMonitor.enabled=true"))


def test_the_pod_monitor_scrapes_serve_pods_by_their_labels_and_port_in_the_watched_namespaces():
    assert "PodMonitor" not in {d["kind"] for d in render("serve.enabled=true")}
    documents = render("serve.enabled=true", "serve.podMonitor.enabled=true", "watchNamespaces={ml,team-b}")
    monitor = next(d for d in documents if d["kind"] == "PodMonitor")
    serve = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "ballast-serve")
    pod = serve["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    port = monitor["spec"]["podMetricsEndpoints"][0]["port"]
    assert port in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["ml", "team-b", "ops"]


def test_runbook_urls_and_the_review_waiting_threshold_come_from_values():
    documents = render(
        "prometheusRule.enabled=true",
        "prometheusRule.runbookBaseUrl=https://git.example.com/ballast/README.md",
        "prometheusRule.reviewWaitingSeconds=7200",
    )
    rules = [
        r for g in next(d for d in documents if d["kind"] == "PrometheusRule")["spec"]["groups"] for r in g["rules"]
    ]
    for rule in rules:
        expected = f"https://git.example.com/ballast/README.md#alert-{rule['alert'].lower()}"
        assert rule["annotations"]["runbook_url"] == expected
    review = next(r for r in rules if r["alert"] == "BallastReviewWaiting")
    assert review["expr"].endswith("> 7200")
    default = next(d for d in render("prometheusRule.enabled=true") if d["kind"] == "PrometheusRule")
    assert default["spec"] == yaml.safe_load((CHART / "files" / "ballast-rules.yaml").read_text())


def test_per_namespace_webhook_tokens_are_mounted_from_their_secret_never_rendered():
    documents = render("webhook.namespaceTokensSecret=ballast-webhook-namespaces")
    pod = next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    directory = next(e["value"] for e in container["env"] if e["name"] == "BALLAST_WEBHOOK_TOKEN_DIR")
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert mount["readOnly"] and volume["secret"]["secretName"] == "ballast-webhook-namespaces"
    default = next(d for d in render() if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert "BALLAST_WEBHOOK_TOKEN_DIR" not in {e["name"] for e in default["containers"][0]["env"]}


SERVE_KINDS = {"Deployment", "Service", "NetworkPolicy"}


def serve_objects(documents: list[dict]) -> list[dict]:
    """What the chart renders for `ballast serve`: its Deployment, Service and NetworkPolicy."""
    return [d for d in documents if d["kind"] in SERVE_KINDS and d["metadata"]["name"] == "ballast-serve"]


@pytest.mark.parametrize(
    ("sets", "namespace"),
    [
        ((), "ops"),
        (("watchNamespaces={ml,team-b}",), "ml"),
        (("watchNamespaces={ml,team-b}", "serve.namespace=team-b"), "team-b"),
        (("watchNamespaces={ml,ops}", "serve.namespace=ops"), "ops"),
    ],
    ids=[
        "one namespace: serve runs in the release's",
        "other namespaces watched: serve runs in the first",
        "serve.namespace picks another watched one",
        "serve.namespace may be the release's when it is watched",
    ],
)
def test_serve_runs_where_a_model_release_can_move_it(sets: tuple[str, ...], namespace: str):
    documents = render("serve.enabled=true", "serve.podMonitor.enabled=true", *sets)
    objects = serve_objects(documents)
    assert {d["kind"] for d in objects} == SERVE_KINDS
    assert {d["metadata"]["namespace"] for d in objects} == {namespace}
    # The operator may patch Deployments there (its Role), and the PodMonitor scrapes there.
    roles = {d["metadata"]["namespace"] for d in documents if d["kind"] == "Role"}
    assert namespace in roles
    monitor = next(d for d in documents if d["kind"] == "PodMonitor")
    assert namespace in monitor["spec"]["namespaceSelector"]["matchNames"]


@pytest.mark.parametrize(
    "sets",
    [
        ("watchNamespaces={ml}", "serve.namespace=other"),
        ("watchNamespaces={ml}", "serve.namespace=ops"),
        ("serve.namespace=ml",),
    ],
    ids=[
        "an unwatched namespace",
        "the release's namespace, not watched",
        "another namespace, only the release's watched",
    ],
)
def test_serve_in_a_namespace_the_operator_does_not_watch_is_refused_naming_both_values(sets: tuple[str, ...]):
    args = ["template", "ballast", str(CHART), "--namespace", "ops", "--kube-version", KUBE_VERSION]
    for value in ("serve.enabled=true", *sets):
        args += ["--set", value]
    completed = helm(*args, check=False)
    assert completed.returncode != 0
    assert "serve.namespace" in completed.stderr and "watchNamespaces" in completed.stderr, completed.stderr


def serve_pod(*sets: str) -> dict:
    documents = render("serve.enabled=true", *sets)
    return next(d for d in serve_objects(documents) if d["kind"] == "Deployment")["spec"]["template"]["spec"]


def store_env_of(pod: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"] if "S3" in e["name"]}


def test_serve_speaks_tls_to_the_store_by_default_with_the_keys_of_its_secret():
    pod = serve_pod()
    assert store_env_of(pod) == {
        "BALLAST_S3_ENDPOINT": "",
        "BALLAST_S3_SECURE": "true",
        "BALLAST_S3_ACCESS_KEY": {"secretKeyRef": {"name": "ballast-store", "key": "accessKey"}},
        "BALLAST_S3_SECRET_KEY": {"secretKeyRef": {"name": "ballast-store", "key": "secretKey"}},
    }
    assert "serviceAccountName" not in pod and [v["name"] for v in pod["volumes"]] == ["tmp"]


@pytest.mark.parametrize(
    ("source", "volume"),
    [
        ("configMap", {"configMap": {"name": "store-ca", "items": [{"key": "bundle.pem", "path": "ca.crt"}]}}),
        ("secret", {"secret": {"secretName": "store-ca", "items": [{"key": "bundle.pem", "path": "ca.crt"}]}}),
    ],
    ids=["a CA bundle from a ConfigMap", "a CA bundle from a Secret"],
)
def test_serve_without_a_secret_uses_its_service_account_s_role_a_region_and_a_private_ca(source: str, volume: dict):
    pod = serve_pod(
        "serve.objectStore.secretName=",
        "serve.objectStore.serviceAccountName=serve-s3",
        "serve.objectStore.region=eu-west-1",
        f"serve.objectStore.caBundle.{source}=store-ca",
        "serve.objectStore.caBundle.key=bundle.pem",
    )
    assert store_env_of(pod) == {
        "BALLAST_S3_ENDPOINT": "",
        "BALLAST_S3_SECURE": "true",
        "BALLAST_S3_REGION": "eu-west-1",
        "BALLAST_S3_CA_FILE": "/etc/ballast/store-ca/ca.crt",
    }
    assert pod["serviceAccountName"] == "serve-s3" and pod["automountServiceAccountToken"] is False
    assert {"name": "store-ca", **volume} in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "store-ca", "mountPath": "/etc/ballast/store-ca", "readOnly": True} in mounts


def test_serve_refuses_a_ca_bundle_from_both_a_secret_and_a_config_map():
    args = ["template", "ballast", str(CHART), "--kube-version", KUBE_VERSION, "--set", "serve.enabled=true"]
    args += ["--set", "serve.objectStore.caBundle.secret=a", "--set", "serve.objectStore.caBundle.configMap=b"]
    completed = helm(*args, check=False)
    assert completed.returncode != 0
    assert "serve.objectStore.caBundle: name exactly one of secret or configMap" in completed.stderr


def store_rules(*args: str) -> list[dict]:
    out = helm("template", "ballast", str(CHART), "--kube-version", KUBE_VERSION, *args).stdout
    role = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Role")
    return [r for r in role["rules"] if set(r["resources"]) & {"secrets", "configmaps"}]


# A release writes its own ConfigMap (`<release>-model`, any name a release may have): get, create and
# patch, never list or watch. Secrets stay readable by name only.
RELEASE_CONFIG_MAPS = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]}


def test_the_operator_reads_only_the_named_store_secrets_and_no_names_grant_nothing():
    assert store_rules() == [
        RELEASE_CONFIG_MAPS,
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["ballast-store"], "verbs": ["get"]},
    ]
    assert store_rules("--set", "objectStore.configMapNames={store-ca}") == [
        RELEASE_CONFIG_MAPS,
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["ballast-store"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["store-ca"], "verbs": ["get"]},
    ]
    # An IAM-role-only install: an empty resourceNames would grant every Secret, so no Secret rule at all.
    assert store_rules("--set-json", "objectStore.secretNames=[]") == [RELEASE_CONFIG_MAPS]


def test_the_operator_s_service_account_carries_the_annotations_for_its_iam_role():
    role_arn = "arn:aws:iam::123456789012:role/ballast"
    documents = render(f"serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={role_arn}")
    account = next(d for d in documents if d["kind"] == "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": role_arn}
    assert "annotations" not in next(d for d in render() if d["kind"] == "ServiceAccount")["metadata"]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("http.port=80", "/http/port"),
        ("logLevel=loud", "/logLevel"),
        ("objectStore.secretNames=null", "secretNames"),
        ("podSecurityContext.runAsNonRoot=false", "/podSecurityContext/runAsNonRoot"),
        ("prometheusRule.reviewWaitingSeconds=10", "/prometheusRule/reviewWaitingSeconds"),
        ("monitoring.labels.bad key=x", "invalid propertyName 'bad key'"),
        ("serve.namespace=Bad_NS", "/serve/namespace"),
        ("logLevel=warn", "/logLevel"),
        ("logFormat=xml", "/logFormat"),
        ("listenAddress=example.com", "/listenAddress"),
        ("fullnameOverride=Bad_Name", "/fullnameOverride"),
        ("priorityClassName=Bad_Name", "/priorityClassName"),
        ("crds.keep=yes", "/crds/keep"),
        ("extraEnv[0].value=x", "/extraEnv/0"),
    ],
)
def test_a_bad_value_is_rejected_by_the_schema_naming_the_field(value: str, field: str):
    completed = helm("template", "ballast", str(CHART), "--kube-version", KUBE_VERSION, "--set", value, check=False)
    assert completed.returncode != 0
    assert field in completed.stderr


def test_the_chart_renders_as_a_subchart_of_a_parent_with_global_values(tmp_path: Path):
    parent = tmp_path / "platform"
    shutil.copytree(CHART, parent / "charts" / "ballast")
    dependency = {"name": "ballast", "version": "0.1.0", "condition": "ballast.enabled"}
    chart = {"apiVersion": "v2", "name": "platform", "version": "1.0.0", "dependencies": [dependency]}
    (parent / "Chart.yaml").write_text(yaml.safe_dump(chart))
    values = {
        "global": {"imageRegistry": "registry.example.com", "imagePullSecrets": ["regcred"]},
        "ballast": {"enabled": True, "watchNamespaces": ["ml"]},
    }
    (parent / "values.yaml").write_text(yaml.safe_dump(values))
    completed = helm("template", "platform", str(parent), "--namespace", "ops")
    documents = [d for d in yaml.safe_load_all(completed.stdout) if d]
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert "--namespace=ml" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


PLATFORM = (
    "imagePullSecrets[0].name=regcred",
    "priorityClassName=platform-critical",
    "podLabels.team=ml",
    "podLabels.app\\.kubernetes\\.io/component=not-the-selector",
    "podAnnotations.vault\\.hashicorp\\.com/role=ballast",
    "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::123456789012:role/ballast",
    "fullnameOverride=ml-ballast",
    "extraEnv[0].name=HTTPS_PROXY",
    "extraEnv[0].value=http://proxy.corp:3128",
    "extraVolumes[0].name=corp-ca",
    "extraVolumes[0].configMap.name=corp-ca",
    "extraVolumeMounts[0].name=corp-ca",
    "extraVolumeMounts[0].mountPath=/etc/ssl/corp",
    "serve.enabled=true",
)


def test_platform_knobs_reach_the_operator_pod_its_service_account_and_serve():
    documents = render(*PLATFORM)
    operator = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "ml-ballast")
    pod = operator["spec"]["template"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["priorityClassName"] == "platform-critical"
    assert pod["metadata"]["labels"]["team"] == "ml"
    # The selector's labels win: a pod label can never detach the pods from their Deployment.
    assert operator["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["annotations"]["vault.hashicorp.com/role"] == "ballast"
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    container = pod["spec"]["containers"][0]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"} in container["env"]
    assert {"name": "corp-ca", "mountPath": "/etc/ssl/corp"} in container["volumeMounts"]
    assert {"name": "corp-ca", "configMap": {"name": "corp-ca"}} in pod["spec"]["volumes"]
    # fullnameOverride names the operator's objects, and they still refer to each other.
    account = next(d for d in documents if d["kind"] == "ServiceAccount")
    assert account["metadata"]["name"] == pod["spec"]["serviceAccountName"] == "ml-ballast"
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ballast"
    }
    names = {d["metadata"]["name"] for d in documents if d["kind"] in {"Service", "Role", "RoleBinding"}}
    assert names == {"ml-ballast", "ballast-serve"}
    binding = next(d for d in documents if d["kind"] == "RoleBinding")
    assert binding["subjects"][0]["name"] == "ml-ballast" and binding["roleRef"]["name"] == "ml-ballast"
    serve = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "ballast-serve")
    serve_pod = serve["spec"]["template"]
    assert serve_pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert serve_pod["spec"]["priorityClassName"] == "platform-critical"
    assert serve_pod["metadata"]["labels"]["team"] == "ml"
    assert serve["spec"]["selector"]["matchLabels"].items() <= serve_pod["metadata"]["labels"].items()
    # The operator's own environment and volumes are not serve's.
    assert "HTTPS_PROXY" not in {e["name"] for e in serve_pod["spec"]["containers"][0]["env"]}


def operator_args(documents: list[dict]) -> list[str]:
    deployment = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "ballast-operator")
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        ((), ["--log-level=info", "--log-format=text"]),
        (("logLevel=warning",), ["--log-level=warning"]),
        (("logLevel=error", "logFormat=json"), ["--log-level=error", "--log-format=json"]),
    ],
    ids=["the defaults", "warning is passed on, not ignored", "error, one JSON object a line"],
)
def test_the_log_level_and_format_reach_the_operator(sets: tuple[str, ...], expected: list[str]):
    args = operator_args(render(*sets))
    assert set(expected) <= set(args)


def test_servers_listen_on_every_interface_so_port_forward_works_unless_told_the_pod_ip():
    documents = render("serve.enabled=true")
    args = operator_args(documents)
    assert "--http-host=0.0.0.0" in args and "--liveness=http://0.0.0.0:8081/healthz" in args
    serve = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "ballast-serve")
    command = serve["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    # Host-network clusters (the local one) share ports: there each pod listens on its own address.
    documents = render("serve.enabled=true", "listenAddress=$(POD_IP)")
    args = operator_args(documents)
    assert "--http-host=$(POD_IP)" in args and "--liveness=http://$(POD_IP):8081/healthz" in args
    serve = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "ballast-serve")
    command = serve["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--host") + 1] == "$(POD_IP)"


BALLAST_CRDS = ["finetunepools.ballast.dev", "finetuneruns.ballast.dev", "modelreleases.ballast.dev"]


def crds_of(documents: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == "CustomResourceDefinition"}


def test_the_crds_are_templates_so_helm_upgrade_upgrades_them_and_uninstall_keeps_them():
    crds = crds_of(render())
    assert sorted(crds) == BALLAST_CRDS
    for name, crd in crds.items():
        generated = yaml.safe_load((ROOT / "crds" / f"ballast.dev_{name.split('.')[0]}.yaml").read_text())
        assert crd["spec"] == generated["spec"], name  # exactly what `python -m ballast.codegen` wrote
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == "ballast"
    assert all("annotations" not in c["metadata"] for c in crds_of(render("crds.keep=false")).values())
    assert crds_of(render("crds.enabled=false")) == {}


def test_every_crd_is_installed_once_kopfs_from_crds_and_ballasts_from_templates():
    args = ["template", "ballast", str(CHART), "--namespace", "ops", "--include-crds"]
    names = [
        d["metadata"]["name"]
        for d in yaml.safe_load_all(helm(*args).stdout)
        if d and d["kind"] == "CustomResourceDefinition"
    ]
    assert sorted(names) == sorted([*BALLAST_CRDS, "kopfpeerings.kopf.dev"])


def test_helm_test_checks_healthz_and_the_crds_with_only_the_rights_it_needs():
    documents = helm_test_hooks("watchNamespaces={ml,team-b}")
    assert all(d["metadata"]["annotations"]["helm.sh/hook"] == "test" for d in documents)
    pod = next(d for d in documents if d["kind"] == "Pod")
    account = next(d for d in documents if d["kind"] == "ServiceAccount")["metadata"]["name"]
    assert pod["spec"]["serviceAccountName"] == account and pod["spec"]["restartPolicy"] == "Never"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "/healthz" in script and all(p in script for p in ("finetunepools", "finetuneruns", "modelreleases"))
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["WATCHED_NAMESPACE"] == "ml" and env["HTTP_PORT"] == "8080"
    operator = next(d for d in render() if d["kind"] == "Deployment")
    selector = operator["spec"]["selector"]["matchLabels"]
    assert dict(pair.split("=") for pair in env["SELECTOR"].split(",")) == selector
    # Restricted Pod Security: the test pod runs wherever the operator may.
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # Its rights: list pods where the operator runs, list the three kinds in one watched namespace.
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d["rules"] for d in documents if d["kind"] == "Role"}
    verbs = {
        (ns, r, v)
        for (ns, _), rules in roles.items()
        for rule in rules
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert verbs == {
        ("ops", "pods", "list"),
        ("ml", "finetunepools", "list"),
        ("ml", "finetuneruns", "list"),
        ("ml", "modelreleases", "list"),
    }
    bindings = [d for d in documents if d["kind"] == "RoleBinding"]
    assert {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings} == set(roles)
    assert all(b["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "ops"}] for b in bindings)


PLAIN = ROOT / "deploy" / "kubernetes"


def test_the_plain_yaml_render_is_current(tmp_path: Path):
    subprocess.run([str(ROOT / "scripts" / "render-manifests"), str(tmp_path)], check=True, capture_output=True)
    for name in ("crds.yaml", "ballast.yaml"):
        assert (PLAIN / name).read_text() == (tmp_path / name).read_text(), f"run scripts/render-manifests ({name})"


def test_the_plain_yaml_holds_every_crd_and_the_namespace_it_installs_into():
    crds = [d for d in yaml.safe_load_all((PLAIN / "crds.yaml").read_text()) if d]
    assert {d["kind"] for d in crds} == {"CustomResourceDefinition"}
    groups = {(d["spec"]["group"], d["spec"]["names"]["kind"]) for d in crds}
    assert sorted(d["metadata"]["name"] for d in crds) == sorted([*BALLAST_CRDS, "kopfpeerings.kopf.dev"])
    documents = [d for d in yaml.safe_load_all((PLAIN / "ballast.yaml").read_text()) if d]
    # The Namespace first, then what lives in it: `kubectl apply -f` on an empty cluster needs both.
    assert documents[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ballast"}}
    assert {d["metadata"].get("namespace", "ballast") for d in documents} == {"ballast"}
    assert "CustomResourceDefinition" not in {d["kind"] for d in documents}  # no CRD applied twice
    custom = {(d["apiVersion"].split("/")[0], d["kind"]) for d in documents if "." in d["apiVersion"].split("/")[0]}
    builtin = ("networking.k8s.io", "rbac.authorization.k8s.io", "admissionregistration.k8s.io")
    assert {c for c in custom if not c[0].endswith(builtin)} <= groups  # KopfPeering's CRD is in crds.yaml


def test_the_plain_yaml_applies_to_a_cluster_crds_first(kube, cluster):
    kubectl = [str(build.binary("kubectl")), "--kubeconfig", cluster.kubeconfig]

    def run(*args: str) -> None:
        completed = subprocess.run([*kubectl, *args], capture_output=True, text=True, check=False)
        assert completed.returncode == 0, completed.stdout + completed.stderr

    run("apply", "-f", str(PLAIN / "crds.yaml"))
    run("wait", "--for", "condition=Established", "--timeout=60s", "-f", str(PLAIN / "crds.yaml"))
    # Everything else as the API server would take it (KopfPeering objects included), in the file's
    # Namespace; a dry run, so no second operator starts on the suite's cluster.
    run("create", "namespace", "ballast")
    try:
        run("apply", "--dry-run=server", "-f", str(PLAIN / "ballast.yaml"))
    finally:
        client.CoreV1Api(kube).delete_namespace("ballast")


def sa_api(cluster, namespace: str) -> client.ApiClient:
    token = (
        client.CoreV1Api(_admin(cluster))
        .create_namespaced_service_account_token(
            "ballast-operator",
            namespace,
            client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
        )
        .status.token
    )
    configuration = client.Configuration()
    configuration.host = cluster.apiserver_url
    configuration.ssl_ca_cert = str(Path(cluster.state_dir) / "pki" / "ca.crt")
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(configuration)


def _admin(cluster) -> client.ApiClient:
    from kubernetes import config

    configuration = client.Configuration()
    config.load_kube_config(cluster.kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


def adopt_crds(kube, namespace: str) -> None:
    """The suite installed the CRDs from crds/, as an install of the chart before its CRDs were
    templates did: the README's adoption step lets release `ballast` in `namespace` take them over."""
    adopt = {
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": "ballast", "meta.helm.sh/release-namespace": namespace},
    }
    for name in BALLAST_CRDS:
        client.ApiextensionsV1Api(kube).patch_custom_resource_definition(name, {"metadata": adopt})


def forbidden(call) -> bool:
    try:
        call()
    except ApiException as error:
        return error.status == 403
    return False


def test_install_run_upgrade_and_uninstall_on_the_local_cluster(kube, namespace, store_secret, pool_store, cluster):
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    # The namespace enforces the restricted Pod Security Standard: the chart's pods must be admitted.
    core.patch_namespace(namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "ballast-webhook"}, "stringData": {"token": "t"}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "unrelated"}, "stringData": {"password": "x"}})
    other = f"{namespace}-other"
    core.create_namespace({"metadata": {"name": other}})
    extensions = client.ApiextensionsV1Api(kube)
    try:
        apps.create_namespaced_deployment(other, serving_deployment("elsewhere"))
        adopt_crds(kube, namespace)
        helm(
            "install",
            "ballast",
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            f"objectStore.secretNames={{{store_secret}}}",
            # The suite's cluster already runs this very policy (tests/conftest.py applies the file).
            "--set",
            "admissionPolicy.enabled=false",
            # The local cluster's pods are host processes sharing ports: each listens on its own address.
            "--set",
            "listenAddress=$(POD_IP)",
            "--wait",
            "--timeout",
            "120s",
            kubeconfig=cluster.kubeconfig,
        )
        pods = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=operator").items
        assert len(pods) == 1 and pods[0].status.phase == "Running"
        for name in BALLAST_CRDS:  # the release manages them now: `helm upgrade` upgrades them
            annotations = extensions.read_custom_resource_definition(name).metadata.annotations
            assert annotations["helm.sh/resource-policy"] == "keep", name

        # `helm test`: the operator answers /healthz, and the three CRDs are served.
        tested = helm("test", "ballast", "--namespace", namespace, "--timeout", "120s", kubeconfig=cluster.kubeconfig)
        assert "Phase:" in tested.stdout and "Succeeded" in tested.stdout, tested.stdout

        # The chart's identity can do its job, and nothing beyond it.
        as_operator = sa_api(cluster, namespace)
        assert forbidden(lambda: client.CoreV1Api(as_operator).read_namespaced_secret("unrelated", namespace))
        assert forbidden(lambda: client.CoreV1Api(as_operator).list_namespaced_secret(namespace))
        assert forbidden(
            lambda: client.AppsV1Api(as_operator).patch_namespaced_deployment(
                "elsewhere", other, {"metadata": {"labels": {"x": "y"}}}
            )
        )
        assert forbidden(lambda: client.CoreV1Api(as_operator).read_namespaced_secret(store_secret, other))
        stored = client.CoreV1Api(as_operator).read_namespaced_secret(store_secret, namespace)
        assert base64.b64decode(stored.data["accessKey"]).decode() == cluster.minio_access_key

        # The installed operator (in its pod, under that identity) runs a whole fine-tune and a release.
        write_pool_samples(pool_store, "invoices", range(50), family="classic")
        start_pool(kube, cluster, namespace, pool_store, gates=LENIENT)
        run = eventually(lambda: run_phase(kube, namespace, "invoices-run-1"), 420, interval=1, what="run finished")
        assert run["status"]["phase"] == "Succeeded", run["status"]
        apps.create_namespaced_deployment(namespace, serving_deployment("detector"))
        create(
            kube,
            namespace,
            "modelreleases",
            {
                "apiVersion": "ballast.dev/v1alpha1",
                "kind": "ModelRelease",
                "metadata": {"name": "detector"},
                "spec": {"pool": "invoices", "deployment": {"name": "detector"}, "model": "ft_v1.1"},
            },
        )
        eventually(lambda: release_status(kube, namespace).get("phase") == "Released", 120, what="released")
        assert served_version(kube, namespace) == "ft_v1.1"
        log = Path(cluster.state_dir) / "node" / "logs" / f"{namespace}_{pods[0].metadata.name}_operator.log"
        text = log.read_text()
        # A 403 from the apiserver; not the milliseconds of a timestamp (",403").
        refused = [line for line in text.splitlines() if "Forbidden" in line or re.search(r"[^,\d]403\b", line)]
        assert refused == [], "\n".join(refused[:20])
        assert cluster.minio_secret_key not in text  # credentials never logged
        assert pool_status(kube, namespace)["verifiedSamples"] == 50

        # Upgrade: a new setting rolls the operator (Recreate), and it keeps working.
        helm(
            "upgrade",
            "ballast",
            str(CHART),
            "--namespace",
            namespace,
            "--reuse-values",
            "--set",
            "logLevel=debug",
            "--wait",
            "--timeout",
            "120s",
            kubeconfig=cluster.kubeconfig,
        )
        deployment = apps.read_namespaced_deployment("ballast-operator", namespace)
        assert "--log-level=debug" in deployment.spec.template.spec.containers[0].args

        # Uninstall leaves only the CRDs (and the user's own objects and data).
        helm("uninstall", "ballast", "--namespace", namespace, "--wait", kubeconfig=cluster.kubeconfig)
        selector = "app.kubernetes.io/instance=ballast"
        assert apps.list_namespaced_deployment(namespace, label_selector=selector).items == []
        assert core.list_namespaced_service_account(namespace, label_selector=selector).items == []
        assert core.list_namespaced_service(namespace, label_selector=selector).items == []
        rbac = client.RbacAuthorizationV1Api(kube)
        assert rbac.list_namespaced_role(namespace, label_selector=selector).items == []
        assert rbac.list_namespaced_role_binding(namespace, label_selector=selector).items == []
        crds = {c.metadata.name for c in extensions.list_custom_resource_definition().items}
        assert set(BALLAST_CRDS) <= crds
    finally:
        core.delete_namespace(other)
