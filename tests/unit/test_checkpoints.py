"""A base brought in by hand is checked without being unpickled: only model classes may appear."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest

from ballast.policy.checkpoints import checkpoint_refusal

ROOT = Path(__file__).resolve().parents[2]


class RunsCode:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("touch /tmp/never",))


class Evaluates:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (eval, ("1 + 1",))


def checkpoint(payload: object) -> bytes:
    """A zip laid out as torch.save writes one, with `payload` pickled as its data.pkl."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("model/data.pkl", pickle.dumps(payload, protocol=4))
        archive.writestr("model/version", "3")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "refused"),
    [
        pytest.param(
            (ROOT / "fixtures" / "base_v1" / "model.pt").read_bytes(), None, id="an Ultralytics base is accepted"
        ),
        pytest.param(
            checkpoint({"model": RunsCode()}), "could run code", id="a pickle that calls os.system is refused"
        ),
        pytest.param(checkpoint([Evaluates()]), "could run code", id="a pickle that calls eval is refused"),
        pytest.param(checkpoint({"epoch": 3, "names": {0: "title"}}), None, id="plain containers are fine"),
        pytest.param(b"\x89PNG not a checkpoint", "not a torch checkpoint", id="a file that is not a zip is refused"),
    ],
)
def test_which_weights_may_be_imported_as_a_base(data: bytes, refused: str | None) -> None:
    refusal = checkpoint_refusal(data)
    if refused is None:
        assert refusal is None
    else:
        assert refusal is not None and refused in refusal
