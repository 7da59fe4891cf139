"""The image recipes and the real node's configuration: pure data, checked without building or
starting anything (tests/realnode does both)."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from ballast_dev.cluster import kubeletnode
from ballast_dev.cluster.plane import SERVICE_CIDR
from ballast_dev.images import recipe
from ballast_dev.images.recipe import OPERATOR, TRAINER

ROOT = Path(__file__).resolve().parents[2]
FILES = [("operator/ballast/__init__.py", b"x = 1\n"), ("pyproject.toml", b"[project]\n")]


def dockerfile(path: str) -> dict[str, str]:
    """The Dockerfile's instructions (last one wins), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / path).read_text())
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found[word] = found.get(word, "") + " " + rest if word in ("ENV", "RUN") else rest
    return found


@pytest.mark.parametrize(("image", "path"), [(OPERATOR, "operator/Dockerfile"), (TRAINER, "trainer-image/Dockerfile")])
def test_each_recipe_gives_the_image_its_dockerfile_s_user_entrypoint_command_and_environment(image, path):
    instructions = dockerfile(path)
    assert instructions["USER"] == str(image.user.uid)
    assert json.loads(instructions["ENTRYPOINT"]) == list(image.entrypoint)
    assert json.loads(instructions.get("CMD", "[]")) == list(image.cmd)
    assert instructions["WORKDIR"] == image.workdir
    env = dict(re.findall(r"(\w+)=(\S+)", instructions["ENV"]))
    assert env == dict(image.env)
    useradd = re.search(r"useradd (.*)", instructions["RUN"])
    assert useradd and f"--uid {image.user.uid}" in useradd.group(1) and image.user.name in useradd.group(1).split()
    assert f"--home-dir {image.user.home}" in useradd.group(1)
    assert ("--create-home" in useradd.group(1)) == image.user.create_home
    copied = {line.split()[0] for line in re.findall(r"^COPY (.+)$", (ROOT / path).read_text(), re.MULTILINE)}
    assert set(image.sources) == (copied - {"pyproject.toml"}) | {"pyproject.toml", "README.md"}


def test_the_operator_image_carries_no_trainer_and_the_trainer_image_the_libraries_opencv_links():
    assert OPERATOR.distributions == (".",) and "trainer-image" not in OPERATOR.sources
    assert {"libgl1", "libglib2.0-0"} <= set(TRAINER.debian_packages)
    assert not {"libgl1", "libglib2.0-0"} & set(OPERATOR.debian_packages)


def test_an_image_is_rebuilt_when_a_source_file_changes_and_not_when_files_are_listed_in_another_order():
    key = recipe.image_key(OPERATOR, "base-1", "wheels-1", FILES)
    assert recipe.image_key(OPERATOR, "base-1", "wheels-1", list(reversed(FILES))) == key
    changed = [(FILES[0][0], b"x = 2\n"), FILES[1]]
    assert recipe.image_key(OPERATOR, "base-1", "wheels-1", changed) != key
    moved = [("operator/ballast/other.py", FILES[0][1]), FILES[1]]
    assert recipe.image_key(OPERATOR, "base-1", "wheels-1", moved) != key


@pytest.mark.parametrize(
    "change",
    [
        {"base": "base-2"},
        {"wheels": "wheels-2"},
        {"image": replace(OPERATOR, cmd=("operator",))},
        {"image": replace(OPERATOR, env=(("HOME", "/home"),))},
    ],
)
def test_an_image_is_rebuilt_when_its_base_wheels_or_recipe_change(change):
    inputs = {"image": OPERATOR, "base": "base-1", "wheels": "wheels-1"} | change
    before = recipe.image_key(OPERATOR, "base-1", "wheels-1", FILES)
    assert recipe.image_key(inputs["image"], inputs["base"], inputs["wheels"], FILES) != before


def test_the_base_depends_on_the_packages_and_mirror_and_the_wheels_on_the_pins_and_pip():
    base = recipe.base_key(OPERATOR, "http://deb.debian.org/debian")
    assert recipe.base_key(replace(OPERATOR, distributions=(".", "x")), "http://deb.debian.org/debian") == base
    assert recipe.base_key(OPERATOR, "http://mirror.example/debian") != base
    assert recipe.base_key(TRAINER, "http://deb.debian.org/debian") != base
    pins = [b'dependencies = ["kopf==1"]']
    assert recipe.dependencies_key(pins) != recipe.dependencies_key([b'dependencies = ["kopf==2"]'])


PATHS = kubeletnode.NodePaths.of(Path("/tmp/pytest-of-root/pytest-1234/a-rather-long-test-name-for-a-cluster0"))


def test_containerd_lets_runc_start_without_lowering_oom_scores_and_never_pulls_its_sandbox_image():
    config = tomllib.loads(kubeletnode.containerd_config(PATHS))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == kubeletnode.PAUSE_REFERENCE
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"]["conf_dir"] == str(PATHS.cni_config)
    assert config["grpc"]["address"] == str(PATHS.containerd_socket)
    # Images are a cache of the machine; what a cluster runs lives and dies with it.
    assert config["root"].startswith(str(PATHS.image_store)) and config["state"].startswith(str(PATHS.run))


def test_socket_paths_fit_a_unix_socket_however_deep_the_cluster_state_is():
    deep = kubeletnode.NodePaths.of(Path("/tmp") / ("d" * 200) / "cluster")
    assert len(str(deep.containerd_socket)) < 108
    # The kubelet binds <root>/pod-resources/<10 digits> and <root>/plugins_registry/<plugin>.sock.
    assert len(str(deep.kubelet_root / "plugins_registry" / "a-plugin-with-a-long-name.sock")) < 108
    assert not deep.kubelet_root.is_relative_to("/run")  # pod volumes (training scratch) stay on disk
    assert deep.run != PATHS.run  # two state directories never share a socket


def test_pods_get_no_default_route_and_no_masquerade_to_the_outside():
    bridge = kubeletnode.cni_config(PATHS, SERVICE_CIDR)["plugins"][0]
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["routes"] == [{"dst": SERVICE_CIDR}]
    assert bridge["ipam"]["ranges"] == [[{"subnet": kubeletnode.POD_CIDR, "gateway": kubeletnode.HOST_ADDRESS}]]
    assert bridge["ipam"]["dataDir"].startswith(str(PATHS.state))  # `down` removes it with the state


def test_the_kubelet_serves_only_the_cluster_s_clients_on_the_bridge_address():
    config = kubeletnode.kubelet_config(PATHS, Path("ca.crt"), (Path("k.crt"), Path("k.key")), 10250, 10248)
    assert config["address"] == kubeletnode.HOST_ADDRESS and config["readOnlyPort"] == 0
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authentication"]["x509"]["clientCAFile"] == "ca.crt"
    assert config["authorization"]["mode"] == "Webhook"  # the apiserver decides, as for kubectl
    assert (config["cgroupDriver"], config["failCgroupV1"]) == ("cgroupfs", False)
    assert config["containerRuntimeEndpoint"] == f"unix://{PATHS.containerd_socket}"


def test_kube_proxy_masquerades_service_traffic_and_opens_node_ports_on_the_bridge_only():
    config = kubeletnode.kube_proxy_config(Path("kp.kubeconfig"), 1, 2)
    assert config["iptables"]["masqueradeAll"] is True and config["mode"] == "iptables"
    assert config["nodePortAddresses"] == [f"{kubeletnode.HOST_ADDRESS}/32"]
    assert config["conntrack"]["maxPerCore"] == 0


def test_a_second_kubelet_node_is_refused_while_the_first_is_up_and_a_stale_claim_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(kubeletnode, "CLAIM", tmp_path / "owner")
    first, second = (kubeletnode.NodePaths.of(tmp_path / name) for name in ("first", "second"))
    kubeletnode.claim(first, is_up=lambda _state: True)
    with pytest.raises(RuntimeError, match=r"another kubelet node is up .*first.*cluster --state-dir"):
        kubeletnode.claim(second, is_up=lambda _state: True)
    kubeletnode.claim(first, is_up=lambda _state: True)  # its own claim again: a restart
    kubeletnode.claim(second, is_up=lambda _state: False)  # the first is gone: stale
    assert (tmp_path / "owner").read_text().strip() == str(tmp_path / "second")
