"""The main job, in its reduced mode: `ballast-dev demo --quick` runs the whole loop on a fresh local cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_demo_runs_the_whole_loop_and_prints_its_summary(tmp_path):
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "ballast-dev"), "demo", "--quick", "--state-dir", str(tmp_path / "cluster")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    out = completed.stdout
    assert completed.returncode == 0, out[-4000:] + completed.stderr[-4000:]
    for step in (
        "Install: CRDs and the operator (Helm chart)",
        "imported 50 samples into pool invoices",
        "invoices-run-1: Training",
        "now serves ft_v1.1",
        "serves base_v1 again",
        "The lesson: the same failures without the old data",
    ):
        assert step in out, step
    assert "mixed fine-tune (seed recipe)" in out and "failures only, no anchor data" in out
    assert (tmp_path / "ballast-demo.png").stat().st_size > 10_000
    assert "cluster down" in out
