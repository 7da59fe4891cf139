"""The main job, in its reduced mode: `ballast-dev demo --quick` runs the whole loop on a fresh local cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ballast.api.contracts import digest_bytes
from ballast.policy.plan import holdout_position
from ballast_dev.images import build as images
from ballast_dev.images import recipe
from ballast_dev.synth import render


def expected_split() -> tuple[int, int]:
    """(trained, held out) of the demo's 60 reviewed failures: held out by each image's digest."""
    pages = [render("modern", 8000 + index, 256).png() for index in range(60)]
    held = sum(holdout_position(digest_bytes(page)) < 0.2 for page in pages)
    return 60 - min(held, 10), min(held, 10)


@pytest.mark.parametrize("node", ["agent", "kubelet"])
def test_the_demo_runs_the_whole_loop_and_writes_its_summary(tmp_path, node):
    """On the node agent, and on a real kubelet where the operator, serve and every Job are
    containers of the images scripts/build-images builds (built here when missing or stale)."""
    if node == "kubelet":
        for name in recipe.RECIPES:
            images.build(recipe.RECIPES[name])
    trained, held = expected_split()
    demo = [str(Path(sys.executable).parent / "ballast-dev"), "demo", "--quick", "--node", node]
    completed = subprocess.run(
        [*demo, "--state-dir", str(tmp_path / "cluster")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    out = completed.stdout
    assert completed.returncode == 0, out[-4000:] + completed.stderr[-4000:]
    for step in (
        "node agent, MinIO" if node == "agent" else "a kubelet on containerd and runc, MinIO",
        "Install: CRDs and the operator (Helm chart)",
        "base_v1 finds",
        "imported 60 samples into pool invoices",
        "invoices-run-1: the seed's mix, fine-tuned from the base, gated",
        # The seed's mix: the 60 reviewed failures, a fifth or so held out, and every anchor
        # document the small quick-mode anchor set has (the table asks for about 1000).
        f"plan: {trained} new (+{held} held out) + 80 old",
        "Gate1Regression",
        "Gate2NewSamples",
        "The lesson: the same failures without the old data",
    ):
        assert step in out, step
    summary = json.loads((tmp_path / "ballast-demo.json").read_text())
    assert summary["recipe"]["optimizer"] == "SGD" and summary["recipe"]["lr0"] == 0.001
    base, run, lesson = summary["models"][0], summary["models"][1], summary["models"][-1]
    assert base["model"] == "base_v1" and 0 <= base["map50"] <= 1 and base["fields_found_unseen"] is not None
    assert (run["model"], run["new_samples"], run["held_out"], run["old_samples"]) == ("ft_v1.1", trained, held, 80)
    assert run["gate1"] in ("Pass", "Review", "Reject") and run["verdict"] in ("Pass", "Review", "Reject")
    assert 0 <= run["detection_trained"] <= 1 and 0 <= run["detection_held_out"] <= 1
    # A run that is not released says why; one that is, says what it finds on unseen pages.
    if run["released"]:
        assert "serves ft_v1.1: it finds" in out and run["fields_found_unseen"] is not None
    else:
        assert run["note"].startswith("not released") and "the reviewer does not approve" in out
    assert (lesson["role"], lesson["old_samples"]) == ("failures only", 0)
    assert {s["title"] for s in summary["stages"]} >= {"Install: CRDs and the operator (Helm chart)"}
    assert summary["totalSeconds"] > 0
    assert (tmp_path / "ballast-demo.png").stat().st_size > 10_000
    assert "cluster down\n" in out  # and no "cluster down with problems"
