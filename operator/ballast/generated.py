"""Files generated from code (CRDs, the CRD reference, alert rules): write them, or check them."""

from __future__ import annotations

import sys
from pathlib import Path


def sync(files: dict[Path, str], check: bool, command: str) -> int:
    """Write every file, or with `check` write nothing and return 1 if any differs from its text."""
    stale = []
    for path, text in files.items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date (run `{command}`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0
