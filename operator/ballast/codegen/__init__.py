"""Files generated from ballast.api and the alert rules: CRDs, the CRD reference, Prometheus rules,
and Argo CD's health checks (from deploy/argocd/health.lua).

python -m ballast.codegen            write them all (run from the repository root)
python -m ballast.codegen --check    write nothing; exit 1 naming every file that differs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMAND = "python -m ballast.codegen"


def generated_files() -> dict[Path, str]:
    from ballast.codegen import argocd, crds, docs, rules

    return {**crds.files(), **docs.files(), **rules.files(), **argocd.files()}


def sync(files: dict[Path, str], root: Path, check: bool) -> list[Path]:
    """Write every file under `root`, or with `check` write nothing; return the files that differ."""
    stale = []
    for relative, text in files.items():
        path = root / relative
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(relative)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs from the code")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: .)")
    args = parser.parse_args(argv)
    stale = sync(generated_files(), args.root, args.check)
    if stale:
        print(f"out of date (run `{COMMAND}`): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0
