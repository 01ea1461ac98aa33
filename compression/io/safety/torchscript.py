"""TorchScript archives, and the torch.save archives that share their layout: every pickle is
scanned, and TorchScript's ``code/`` searched for operators that reach files or the network.

A TorchScript file runs its own ``__setstate__`` when loaded and may call ``aten::save``;
its C++ unpickler resolves ``__torch__.*`` to classes compiled from the archive's own code.
"""
from __future__ import annotations

import re
import zipfile

from compression.errors import UnsafeFileError
from compression.io.safety.archives import read_member, relative_name
from compression.io.safety.pickles import check_pickle, is_tensor_global
from compression.io.safety.report import TORCHSCRIPT, WHAT_TO_UPLOAD

# TorchScript's C++ unpickler resolves __torch__.* to classes compiled from the archive's own
# code/ (checked separately) and uses these list/type helpers; it cannot import Python names.
_TORCHSCRIPT_HELPERS = frozenset({
    "torch.jit._pickle.build_intlist",
    "torch.jit._pickle.build_doublelist",
    "torch.jit._pickle.build_boollist",
    "torch.jit._pickle.build_tensorlist",
    "torch.jit._pickle.build_tensor_from_id",
    "torch.jit._pickle.restore_type_tag",
})


def _is_torchscript_global(name: str) -> bool:
    return name.startswith("__torch__.") or name in _TORCHSCRIPT_HELPERS or is_tensor_global(name)


# Operators a TorchScript program could call to reach the file system (aten::save writes any
# path, aten::from_file maps one, debugprims::load_tensor reads one), and op namespaces beyond
# the computational ones (c10d opens network connections).
_TORCHSCRIPT_DENIED = re.compile(r"\b(save|from_file|load_tensor)\b")
_TORCHSCRIPT_OPS = re.compile(r"\bops\.(\w+)\.")
_TORCHSCRIPT_NAMESPACES = frozenset({"aten", "prim", "prims", "quantized", "_quantized"})


def _check_torchscript_code(source: bytes, where: str) -> None:
    text = source.decode("utf-8", errors="replace")
    denied = _TORCHSCRIPT_DENIED.search(text)
    namespaces = {m.group(1) for m in _TORCHSCRIPT_OPS.finditer(text)} - _TORCHSCRIPT_NAMESPACES
    if denied or namespaces:
        found = repr(denied.group(0)) if denied else "ops." + sorted(namespaces)[0]
        raise UnsafeFileError(
            f"{where} calls {found}, an operator that reaches outside the model (files or "
            f"network); loading or running it would do so, so it was not loaded. {WHAT_TO_UPLOAD}"
        )


def check_pickle_archive(archive: zipfile.ZipFile, where: str, kind: str) -> None:
    """torch.save and TorchScript archives: scan every pickle, and TorchScript's code."""
    allowed = _is_torchscript_global if kind == TORCHSCRIPT else is_tensor_global
    for member in archive.infolist():
        name = relative_name(member.filename)
        if name.endswith("pkl"):  # data.pkl, constants.pkl, *.debug_pkl, bytecode.pkl
            check_pickle(read_member(archive, member, where), f"{where}:{name}", allowed)
        elif kind == TORCHSCRIPT and name.startswith("code/") and name.endswith(".py"):
            _check_torchscript_code(read_member(archive, member, where), f"{where}:{name}")
