"""`ballast-dev`: the development commands.

ballast-dev cluster up|down|env|status|logs POD|build   the local cluster (`ballast-dev cluster -h`)
ballast-dev demo [--quick] [--keep] [--node kubelet]     the whole continuous fine-tuning loop, locally
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

from ballast_dev.cluster import build, plane


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ballast-dev", description="Ballast development tools.")
    commands = root.add_subparsers(dest="command", required=True)
    register_cluster(commands)
    register_demo(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.handler(args) or 0)


def register_cluster(commands: argparse._SubParsersAction) -> None:
    cluster = commands.add_parser("cluster", help="the local cluster", description=__doc__)
    cluster.add_argument("--state-dir", type=Path, default=None, help="default: $BALLAST_CLUSTER_DIR")
    verbs = cluster.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser("up", help="build (first time only) and start everything")
    up.add_argument("--gpus", default="1", help="nvidia.com/gpu capacity the node advertises (default 1)")
    up.add_argument(
        "--node",
        choices=("agent", "kubelet"),
        default="agent",
        help="agent: Ballast's node agent runs pods as host processes (fast, the default); kubelet: a real"
        " kubelet on containerd and runc runs them from the images of scripts/build-images (root)",
    )
    up.set_defaults(handler=_up)
    down = verbs.add_parser("down", help="stop what `up` started")
    down.add_argument("--purge", action="store_true", help="also delete the state directory (etcd, MinIO data)")
    down.set_defaults(handler=_down)
    verbs.add_parser("env", help="print the shell exports (KUBECONFIG, MinIO)").set_defaults(handler=_env)
    verbs.add_parser("status", help="processes, ports and pids").set_defaults(handler=_status)
    logs = verbs.add_parser("logs", help="a pod's logs from the node agent")
    logs.add_argument("pod")
    logs.add_argument("-n", "--namespace", default="default")
    logs.add_argument("-c", "--container", default=None)
    logs.set_defaults(handler=_logs)
    verbs.add_parser("build", help="build the binaries into the cache").set_defaults(handler=_build)


def _up(args: argparse.Namespace) -> int:
    info = plane.up(args.state_dir, capacity={"nvidia.com/gpu": args.gpus}, node_kind=args.node)
    print('\n# to use it:\neval "$(ballast-dev cluster env)"')
    print(f"# kubectl: {build.binary('kubectl')}")
    del info
    return 0


def _down(args: argparse.Namespace) -> int:
    state = (args.state_dir or plane.default_state_dir()).resolve()
    problems = plane.down(state)
    if args.purge and state.exists():
        shutil.rmtree(state)
    return 1 if problems else 0


def _env(args: argparse.Namespace) -> int:
    info = plane.load(args.state_dir)
    if info is None:
        print("no cluster is up: run `ballast-dev cluster up`", file=sys.stderr)
        return 1
    for key, value in info.env().items():
        print(f"export {key}={shlex.quote(value)}")
    print(f"export PATH={shlex.quote(str(build.cache_dir() / 'links'))}:$PATH")
    return 0


def _status(args: argparse.Namespace) -> int:
    info = plane.load(args.state_dir)
    if info is None:
        print("down")
        return 1
    rows = [
        {"name": p.name, "pid": p.pid, "alive": plane.is_alive(p.pid), "ports": p.ports, "log": p.log}
        for p in info.processes
    ]
    print(json.dumps({"apiserver": info.apiserver_url, "minio": info.minio_endpoint, "processes": rows}, indent=2))
    return 0 if all(r["alive"] for r in rows) else 1


def _logs(args: argparse.Namespace) -> int:
    state = (args.state_dir or plane.default_state_dir()).resolve()
    pattern = f"{args.namespace}_{args.pod}_{args.container or '*'}.log"
    files = sorted((state / "node" / "logs").glob(pattern))
    if not files:
        print(f"no logs for pod {args.namespace}/{args.pod}", file=sys.stderr)
        return 1
    for path in files:
        if len(files) > 1:
            print(f"==> {path.name} <==")
        sys.stdout.write(path.read_text(errors="replace"))
    return 0


def _build(_args: argparse.Namespace) -> int:
    print(json.dumps(build.build_all()))
    return 0


def register_demo(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the continuous fine-tuning loop locally", description=__doc__)
    demo.add_argument("--keep", action="store_true", help="leave the cluster up and print how to explore it")
    demo.add_argument("--quick", action="store_true", help="one training epoch and less data (what CI runs)")
    demo.add_argument("--state-dir", type=Path, default=None, help="cluster state (default: a fresh temp dir)")
    demo.add_argument(
        "--node",
        choices=("agent", "kubelet"),
        default="agent",
        help="kubelet: every pod is a container of scripts/build-images' images on a real kubelet (root)",
    )
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from ballast_dev.demo import run as demo

    return demo(args.quick, args.keep, args.state_dir, args.node)


if __name__ == "__main__":
    sys.exit(main())
