"""Air-gapped by construction: set up Ultralytics so it never reaches the network.

Call `prepare()` before importing ultralytics. It sets YOLO_OFFLINE (skips the online check and
the update check), turns off auto-install, writes a settings file with sync and every integration
off, and ships the fonts (Ultralytics downloads Arial.ttf on every train/val otherwise, ignoring
YOLO_OFFLINE). `audit()` installs a hook that refuses any connection other than to the allowed
hosts (the object store), and records each attempt.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

SETTINGS = {
    "settings_version": "0.0.8",
    "sync": False,
    "api_key": "",
    "openai_api_key": "",
    "hub": False,
    "clearml": False,
    "comet": False,
    "dvc": False,
    "mlflow": False,
    "neptune": False,
    "raytune": False,
    "tensorboard": False,
    "wandb": False,
    "vscode_msg": False,
    "openvino_msg": False,
}


def _font_source() -> Path:
    # matplotlib (an ultralytics dependency) ships DejaVuSans; Ultralytics only needs *a* TTF there.
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def prepare(workdir: Path) -> Path:
    """Write the offline config directory under `workdir` and point Ultralytics at it (and at safe
    weight loading). Call it before ultralytics is imported: it reads these at import."""
    config_dir = workdir / "yolo-config"
    settings_dir = config_dir / "Ultralytics"
    settings_dir.mkdir(parents=True, exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = settings_dir / name
        if not target.exists():
            shutil.copyfile(_font_source(), target)
    settings = dict(SETTINGS)
    settings.update(
        {
            "datasets_dir": str(workdir / "datasets"),
            "weights_dir": str(workdir / "weights"),
            "runs_dir": str(workdir / "runs"),
        }
    )
    (settings_dir / "settings.json").write_text(json.dumps(settings, indent=2))
    os.environ.update(
        {
            "YOLO_OFFLINE": "true",
            "YOLO_AUTOINSTALL": "false",
            "YOLO_CONFIG_DIR": str(config_dir),
            "MPLCONFIGDIR": str(workdir / "mpl"),
            "HF_HUB_OFFLINE": "1",
            # Weights load with torch's weights_only and Ultralytics' allow-list of model classes:
            # a checkpoint whose pickle would run code is refused, never executed.
            "ULTRALYTICS_SAFE_LOAD": "1",
        }
    )
    (workdir / "mpl").mkdir(exist_ok=True)
    return config_dir


class NetworkAudit:
    """Records every outbound connection and name lookup; refuses those to other hosts."""

    def __init__(self, allowed_hosts: set[str]) -> None:
        self.allowed = {h for h in allowed_hosts if h}
        self.allowed_addresses = set(self.allowed)
        self.attempts: list[str] = []
        self.refused: list[str] = []

    def _check(self, host: Any, what: str) -> None:
        host = host.decode() if isinstance(host, bytes) else str(host)
        if host in ("", "None") or host.startswith("/"):
            return  # unix sockets and local bookkeeping
        self.attempts.append(f"{what} {host}")
        if host not in self.allowed_addresses:
            self.refused.append(f"{what} {host}")
            raise PermissionError(f"network access to {host} refused: the trainer runs offline")

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.connect":
            address = args[1]
            if isinstance(address, tuple) and address:
                self._check(address[0], "connect")
        elif event == "socket.getaddrinfo":
            self._check(args[0], "lookup")


_installed: NetworkAudit | None = None


def audit(allowed_hosts: set[str]) -> NetworkAudit:
    """Install (once per process) the audit hook; resolve the allowed hosts first."""
    global _installed
    if _installed is None:
        _installed = NetworkAudit(allowed_hosts)
        for host in list(_installed.allowed):
            try:
                for info in socket.getaddrinfo(host, None):
                    _installed.allowed_addresses.add(str(info[4][0]))
            except OSError:
                pass
        sys.addaudithook(_installed.hook)
    return _installed
