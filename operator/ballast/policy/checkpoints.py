"""Is a weights file one a pool may take as its base? A look at its pickle, without unpickling it.

A torch checkpoint is a zip whose `data.pkl` names the classes it rebuilds. Ultralytics' own
checkpoints name only torch, its tensor storages, torch.nn and ultralytics.nn classes and a few
builtin containers; a pickle that names anything else (os.system, builtins.eval, subprocess...)
could run code when loaded, and is refused. The trainer, the gate and serve load weights with
Ultralytics' safe loader as well: this check is the first line, not the only one.
"""

from __future__ import annotations

import io
import pickletools
import zipfile

ALLOWED_MODULES = ("torch", "torch._utils", "torch.nn.modules.", "ultralytics.nn.")
ALLOWED_NAMES = {
    ("collections", "OrderedDict"),
    ("__builtin__", "set"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "tuple"),
}
_STRING_PUSHES = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_MEMO_GETS = {"GET", "BINGET", "LONG_BINGET"}
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}


def _allowed(module: str, name: str) -> bool:
    if (module, name) in ALLOWED_NAMES:
        return True
    if module in ("torch", "torch._utils"):
        return name.endswith("Storage") or name in ("Size", "_rebuild_parameter", "_rebuild_tensor_v2", "device")
    return any(module.startswith(prefix) for prefix in ALLOWED_MODULES if prefix.endswith("."))


def checkpoint_refusal(data: bytes) -> str | None:
    """Why `data` may not be imported as a base (None: it may)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            return "not a torch checkpoint (a zip with one data.pkl)"
        pickled = archive.read(pickles[0])
    except (zipfile.BadZipFile, KeyError, OSError):
        return "not a torch checkpoint (a zip with one data.pkl)"
    for module, name in _globals(pickled):
        if module is None or name is None:
            return "the checkpoint builds the name of a class it loads: it cannot be checked"
        if not _allowed(module, name):
            return f"the checkpoint loads {module}.{name}, which is not a model class: loading it could run code"
    return None


def _globals(pickled: bytes) -> list[tuple[str | None, str | None]]:
    """Every (module, name) the pickle would import; None where it is not a literal string."""
    found: list[tuple[str | None, str | None]] = []
    stack: list[str | None] = []  # what the last pushes were, strings or unknown
    memo: dict[object, str | None] = {}
    try:
        for opcode, arg, _position in pickletools.genops(pickled):
            name = opcode.name
            if name == "GLOBAL":
                literal_module, _, literal_name = str(arg).partition(" ")
                found.append((literal_module, literal_name))
                stack.append(None)
            elif name == "STACK_GLOBAL":
                attribute = stack.pop() if stack else None
                module = stack.pop() if stack else None
                found.append((module, attribute))
                stack.append(None)
            elif name in _STRING_PUSHES:
                stack.append(str(arg))
            elif name in _MEMO_PUTS:
                memo[arg] = stack[-1] if stack else None
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1] if stack else None
            elif name in _MEMO_GETS:
                stack.append(memo.get(arg))
            else:
                stack.append(None)
    except (ValueError, IndexError):
        found.append((None, None))
    return found
