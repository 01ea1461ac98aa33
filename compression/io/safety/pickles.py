"""Pickles read with ``pickletools``, never unpickled: the globals a pickle would import, checked
against what ``torch.save(state_dict)`` writes; legacy (pre-1.6) ``torch.save`` files.

A pickle names any Python callable and the unpickler calls it, so a pickle is only as safe as
the globals it imports: listing them statically is enough to refuse one.
"""
from __future__ import annotations

import mmap
import pickletools
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch

from compression.errors import ModelLoadError, UnsafeFileError
from compression.io.safety.report import WHAT_TO_UPLOAD

_STRING_OPS = {
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8",
}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_NEUTRAL_OPS = {"PROTO", "FRAME"}  # change nothing on the stack
_UNRESOLVED = "<a global whose name the pickle computes at load time>"


def pickle_globals(stream: bytes | BinaryIO, where: str) -> list[str]:
    """Every global a pickle would import, read with ``pickletools.genops`` (never executed).

    A pickle can only obtain a callable (for REDUCE, BUILD, NEWOBJ, OBJ) by importing it with
    GLOBAL, STACK_GLOBAL or INST, or from copyreg's extension registry (EXT1/2/4); listing those
    is therefore enough to know everything it could call. STACK_GLOBAL takes its names from the
    stack; they are resolved when the two preceding pushes are literal strings (what every
    pickler writes) and reported as unresolved otherwise.

    >>> import pickle, collections
    >>> pickle_globals(pickle.dumps(collections.OrderedDict()), "example")
    ['collections.OrderedDict']
    """
    found: list[str] = []
    recent: list[str | None] = []  # the last two pushes: a literal string, or None for anything else
    memo: dict[int, str | None] = {}
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            name = opcode.name
            if name in _STRING_OPS:
                recent.append(arg if isinstance(arg, str) else None)
            elif name in _PUT_OPS:
                memo[arg] = recent[-1] if recent else None
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in _GET_OPS:
                recent.append(memo.get(arg))
            elif name not in _NEUTRAL_OPS:
                if name in ("GLOBAL", "INST"):
                    found.append(".".join(arg.split(" ", 1)))
                elif name == "STACK_GLOBAL":
                    module, qualname = recent[-2:] if len(recent) == 2 else (None, None)
                    found.append(f"{module}.{qualname}" if module and qualname else _UNRESOLVED)
                elif name.startswith("EXT"):
                    found.append(f"<copyreg extension code {arg}>")
                recent.append(None)
            del recent[:-2]
    except (ValueError, EOFError, struct.error, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{where} is a truncated or corrupt pickle ({error}).") from None
    return found


def check_pickle(stream: bytes | BinaryIO, where: str, allowed: Callable[[str], bool]) -> None:
    """Raise ``UnsafeFileError`` if the pickle imports any global that ``allowed`` rejects."""
    refused = list(dict.fromkeys(g for g in pickle_globals(stream, where) if not allowed(g)))
    if not refused:
        return
    refused.sort(key=lambda g: g.startswith("torch."))  # the foreign names first: they tell most
    shown = ", ".join(map(repr, refused[:2])) + (f" and {len(refused) - 2} more" if len(refused) > 2 else "")
    what_to_do = WHAT_TO_UPLOAD
    if any(g.startswith(("torch.nn.modules.", "__main__.")) for g in refused):
        what_to_do = "It looks like a whole model saved with torch.save(model): save model.state_dict() instead."
    raise UnsafeFileError(
        f"{where} refers to {shown} (not tensors or plain containers): loading it would import and "
        f"run code named by the file, so it was not loaded. {what_to_do}"
    )


# What torch.save(state_dict) writes (checked against torch 2.13 output): tensors rebuilt from
# storages (quantized ones too), OrderedDicts (state_dicts and empty backward-hook dicts),
# sizes and devices, and _codecs.encode, which protocol 2 uses for bytes; plus torch's
# dtypes, qschemes and storage classes (see is_tensor_global).
_TENSOR_GLOBALS = frozenset({
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch.Size",
    "torch.device",
    "_codecs.encode",
})


def is_tensor_global(name: str) -> bool:
    """The allowlist: tensor rebuilders, containers, and torch's dtypes, qschemes and storages."""
    if name in _TENSOR_GLOBALS:
        return True
    module, _, attribute = name.rpartition(".")
    if module != "torch" or attribute.startswith("_"):
        return False
    value = vars(torch).get(attribute)  # a lookup in torch's namespace, never an import
    if isinstance(value, (torch.dtype, torch.qscheme)):
        return True
    return isinstance(value, type) and issubclass(value, (torch.storage.TypedStorage, torch.UntypedStorage))


# The first pickle of a legacy torch.save file: protocol 2, then LONG1 of torch's magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_LEGACY_PICKLES = 5  # magic number, protocol, sys info, the object, storage keys


def inspect_legacy_pickle(path: Path) -> None:
    """Scan the pickles of a pre-1.6 torch.save file; refuse a plain Python pickle."""
    # A memory map, not a file: a pickle declaring a huge string must not make read() allocate it.
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
        is_torch = view[: len(_LEGACY_TORCH_MAGIC)] == _LEGACY_TORCH_MAGIC
        for index in range(_LEGACY_PICKLES if is_torch else 1):
            check_pickle(view, f"{path.name} (pickle {index + 1})", is_tensor_global)
    if not is_torch:
        raise ModelLoadError(
            f"{path.name} is a plain Python pickle, not a file written by torch.save. {WHAT_TO_UPLOAD}"
        )
