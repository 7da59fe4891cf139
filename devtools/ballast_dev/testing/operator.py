"""Run the operator as its own process for tests: real kopf, real watches, killable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: str,
        namespace: str,
        log: Path,
        http_port: int | None = None,
        webhook_token: str | None = None,
        extra_args: list[str] | None = None,
        pod_namespace: str | None = None,
    ) -> None:
        self.extra_args = extra_args or []
        self.pod_namespace = pod_namespace or namespace  # where the operator "runs" (its own namespace)
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log = log
        self.http_port = http_port
        self.webhook_token = webhook_token
        self.process: subprocess.Popen | None = None

    def start(self) -> OperatorProcess:
        ballast = str(Path(sys.executable).parent / "ballast")
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, POD_NAMESPACE=self.pod_namespace)
        if self.webhook_token:
            env["BALLAST_WEBHOOK_TOKEN"] = self.webhook_token
        http = ["--http-port", str(self.http_port), "--http-host", "127.0.0.1"] if self.http_port else []
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [ballast, "operator", "--standalone", "-n", self.namespace, *http, *self.extra_args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no clean-up, as when a node dies."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
