"""Local-cluster benchmark: cold build time, warm `up` time, memory of the running plane.

    .venv/bin/python benchmarks/cluster.py            # warm up/down x3 and RSS
    .venv/bin/python benchmarks/cluster.py --cold     # also a cold build (empty GOCACHE and binary cache)

Targets (issue 3): warm `up` < 20 s on the 2-core machine; plane RSS < 1.5 GiB in all.
The cold build keeps GOMODCACHE (module downloads) unless --cold-modules is given too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ballast_dev.cluster import build, plane


def rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pending += [int(c) for c in children]
        except OSError:
            continue
    return total / 1024


def cold_build(fresh_modules: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        env = dict(os.environ, BALLAST_CACHE=f"{scratch}/cache", GOCACHE=f"{scratch}/gocache")
        if fresh_modules:
            env["GOMODCACHE"] = f"{scratch}/gomod"
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "ballast_dev.cluster.build"], env=env, check=True, capture_output=True, text=True
        )
        per_part = json.loads(out.stdout.strip().splitlines()[-1])
        per_part["total"] = round(time.monotonic() - started, 1)
        if fresh_modules:
            subprocess.run(["chmod", "-R", "u+w", f"{scratch}/gomod"], check=False)
        return per_part


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true")
    parser.add_argument("--cold-modules", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report: dict[str, object] = {}
    if args.cold:
        report["cold_build_seconds"] = cold_build(args.cold_modules)
    build.build_all()  # make sure the warm cache is complete before timing `up`
    ups, downs, memory = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.repeat):
            state = Path(scratch) / f"plane-{i}"
            started = time.monotonic()
            info = plane.up(state, log=lambda _m: None)
            ups.append(time.monotonic() - started)
            time.sleep(10)  # let the controllers settle before measuring memory
            per_process = {p.name: round(rss_mib(p.pid), 1) for p in info.processes}
            memory.append(per_process)
            started = time.monotonic()
            problems = plane.down(state, log=lambda _m: None)
            downs.append(time.monotonic() - started)
            assert not problems, problems
    report["warm_up_seconds"] = {"median": round(statistics.median(ups), 2), "all": [round(u, 2) for u in ups]}
    report["down_seconds"] = {"median": round(statistics.median(downs), 2)}
    report["rss_mib"] = memory[-1] | {"total": round(sum(memory[-1].values()), 1)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
