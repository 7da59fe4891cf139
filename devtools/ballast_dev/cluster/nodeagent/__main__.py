"""`python -m ballast_dev.cluster.nodeagent`: register the node and run the pods bound to it until
SIGTERM or SIGINT, which stops every pod process (without deleting the pods) and exits."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from . import __doc__ as package_doc
from . import node
from .agent import NodeAgent

log = logging.getLogger("ballast.nodeagent")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ballast-node-agent", description=(package_doc or "").splitlines()[0])
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
    capacity = node.capacity(os.cpu_count(), args.capacity)
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
