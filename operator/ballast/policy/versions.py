"""Model version names and lineage rules (seed section 2): fine-tunes always start from a base."""

from __future__ import annotations

import re
from dataclasses import dataclass

_BASE = re.compile(r"^base_v([1-9][0-9]*)$")
_FINETUNE = re.compile(r"^ft_v([1-9][0-9]*)\.([1-9][0-9]*)$")


@dataclass(frozen=True)
class Version:
    base: int
    finetune: int | None = None  # None for a base model

    @property
    def is_base(self) -> bool:
        return self.finetune is None

    def __str__(self) -> str:
        return f"base_v{self.base}" if self.finetune is None else f"ft_v{self.base}.{self.finetune}"


def parse_version(name: str) -> Version:
    if match := _BASE.match(name):
        return Version(int(match.group(1)))
    if match := _FINETUNE.match(name):
        return Version(int(match.group(1)), int(match.group(2)))
    raise ValueError(f"not a model version: {name!r} (expected base_v<N> or ft_v<N>.<M>)")


def finetune_version(base: str, number: int) -> str:
    """The `number`-th fine-tune of `base`: ft_v<N>.<number>."""
    parsed = parse_version(base)
    if not parsed.is_base:
        raise ValueError(chaining_refusal(base))
    if number < 1:
        raise ValueError(f"fine-tune numbers start at 1, got {number}")
    return str(Version(parsed.base, number))


def next_base_version(base: str, attempt: int = 1) -> str:
    """The version the `attempt`-th Rebase from `base` trains: base_v<N+attempt>. Every attempt gets
    its own name, so a rejected base_v2 is never confused with the base_v3 that passed after it."""
    if attempt < 1:
        raise ValueError(f"rebase attempts start at 1, got {attempt}")
    parsed = parse_version(base)
    return str(Version(parsed.base + attempt))


def chaining_refusal(start_from: str) -> str:
    return (
        f"refusing to fine-tune from {start_from}: it is a fine-tuned model; fine-tunes always start from "
        "a base (never chain fine-tunes, seed section 2)"
    )


def start_model_refusal(start_from: str, lineage_base_digest: str | None) -> str | None:
    """Why a training run may not start from this model, or None when it may.

    A model is a base when its name says so AND its lineage has no parent base: a base renamed
    from a fine-tune would otherwise slip through.
    """
    try:
        parsed = parse_version(start_from)
    except ValueError as error:
        return str(error)
    if not parsed.is_base or lineage_base_digest is not None:
        return chaining_refusal(start_from)
    return None
