"""`ballast-dev demo`: the whole continuous fine-tuning loop on the local cluster, start to finish.

 1. Start the local cluster; install the operator with the Helm chart (admission policy included).
 2. Write the original documents (a broad family of layouts, papers, inks) and base_v1 to MinIO.
 3. Serve base_v1 (`ballast-trainer serve`, a Deployment moved by a ModelRelease).
 4. Production shifts to a new template the base never saw: it finds few of its fields.
 5. Users report failures (/feedback); a reviewer labels them and imports them (`ballast samples import`).
 6. At 50 verified samples the pool starts a run: the seed's mix and recipe, from the base, gated;
    part of the new samples is held out, so Gate 2 also shows documents the model never saw.
 7. A Pass is released; a Review or Reject is not (the demo says why, from the gate report), and
    the next batch of reviewed failures starts the next run. The demo never approves a candidate
    that finds less on the new documents than the model serving.
 8. A rollback and back; then the lesson: the same failures without the old data.
A table, `ballast-demo.json` and `ballast-demo.png` close it. `--quick` is one short round (CI).
"""

from __future__ import annotations

from pathlib import Path

from ballast_dev.demo.steps import Settings


def run(quick: bool, keep: bool, state_dir: Path | None, node: str = "agent") -> int:
    from ballast_dev.demo.story import Demo

    return Demo(Settings(quick=quick, keep=keep, state_dir=state_dir, node=node)).run()
