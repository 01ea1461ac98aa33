"""torch.export programs (.pt2): every member that ``torch.export.load`` would deserialise.

A program names operators by dotted path, parses shape expressions with ``sympy.sympify``
(which evaluates them) and compiles guards with ``exec``; its weights and constants may be
pickles and its sample inputs torch.save archives. Operators must be registered tensor
operators, expressions arithmetic on shapes, pickles tensors; raw tensor bytes are only copied.
"""
from __future__ import annotations

import ast
import functools
import io
import math
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import torch

from compression.errors import ModelLoadError, UnsafeFileError
from compression.io.safety.archives import (
    ZIP_MAGIC,
    archive_kind,
    check_directory,
    open_zip,
    read_member,
    relative_name,
)
from compression.io.safety.limits import MAX_EMBEDDED_BYTES, read_json
from compression.io.safety.pickles import check_pickle, is_tensor_global
from compression.io.safety.report import TORCH_EXPORT, WHAT_TO_UPLOAD
from compression.io.safety.torchscript import check_pickle_archive

_EXPORT_TEXT_MEMBERS = ("archive_format", "archive_version", "version", "byteorder", ".data/", "extra/")
_NATIVE_SUFFIXES = (".so", ".dll", ".dylib", ".o", ".cpp", ".pyd")


def check_export_archive(archive: zipfile.ZipFile, where: str) -> int | None:
    """Check a .pt2 member by member; return the parameter count its weight config declares.

    torch.export.load (torch 2.13) deserialises: models/*.json (operators resolved by dotted
    path, shape expressions through sympy.sympify, guards compiled with exec), pickled weights
    and constants via torch.load(weights_only=False), opaque constants via pickle.loads,
    sample inputs via torch.load (falling back to weights_only=False), the 2.7 format's
    serialized_*.pt, and AOTInductor shared libraries. Raw tensor bytes it only copies.
    """
    members = [(relative_name(m.filename), m) for m in archive.infolist()]
    raw: dict[str, int] = {}  # member -> values torch copies from it as tensor bytes
    unpickled: set[str] = set()  # members a config tells torch to deserialise
    parameters: int | None = None  # the 2.7 format has no weight config
    for name, member in members:
        if not name.endswith(".json"):
            continue
        document = read_json(read_member(archive, member, where), f"{where}:{name}")
        folder = name.rpartition("/")[0]
        if folder in ("data/weights", "data/constants") and name.endswith("_config.json"):
            payloads, pickled = _payloads(document, f"{where}:{name}", constants=folder == "data/constants")
            raw.update((f"{folder}/{path_name}".lower(), count) for path_name, count in payloads.items())
            unpickled.update(f"{folder}/{path_name}".lower() for path_name in pickled)
            if folder == "data/weights":
                parameters = (parameters or 0) + sum(payloads.values())
        else:
            _check_program_json(document, f"{where}:{name}")
    for name, member in members:
        if name in raw and name not in unpickled and raw[name] > 0 and member.file_size == 0:
            # torch.export.load materialises an empty payload as zeros of the declared size.
            raise ModelLoadError(
                f"{where}: payload {name!r} declares {raw[name]:,} values but is empty; the file "
                "is truncated or corrupt."
            )
        # A member one entry reads as raw bytes and another unpickles is scanned as a pickle.
        skipped = name.endswith(".json") or name in raw or name.startswith(_EXPORT_TEXT_MEMBERS)
        if skipped and name not in unpickled:
            continue
        if name.startswith("data/aotinductor/") or name.endswith(_NATIVE_SUFFIXES):
            raise UnsafeFileError(
                f"{where} contains compiled native code ({name}); loading it would run that "
                f"code. {WHAT_TO_UPLOAD}"
            )
        data = read_member(archive, member, where)  # everything left is deserialised
        if data.startswith(ZIP_MAGIC):
            _check_embedded_archive(data, f"{where}:{name}")
        elif data.startswith(b"\x80"):
            check_pickle(data, f"{where}:{name}", is_tensor_global)
        else:
            raise ModelLoadError(f"{where}: member {name!r} is neither raw weights, a pickle nor an archive.")
    return parameters


def _check_embedded_archive(data: bytes, where: str) -> None:
    """A torch.save archive inside a .pt2 (sample inputs, pickled weights), which torch.load
    opens, or hands to torch.jit.load when it is TorchScript."""
    with open_zip(io.BytesIO(data), where) as archive:
        check_directory(archive, where, MAX_EMBEDDED_BYTES)
        kind = archive_kind(archive)
        if kind is None:
            raise ModelLoadError(f"{where} is a zip archive that torch.load cannot read (no data.pkl).")
        if kind == TORCH_EXPORT:
            raise UnsafeFileError(f"{where} embeds a torch.export program; torch.export.save never does.")
        check_pickle_archive(archive, where, kind)


# torch.export.load unpickles constants whose file name starts with these, whatever use_pickle says.
_PICKLED_CONSTANT_PREFIXES = ("custom_obj_", "opaque_obj_")


def _payloads(config: Any, where: str, *, constants: bool) -> tuple[dict[str, int], set[str]]:
    """A weights/constants config's payloads: those torch copies as raw bytes, with their
    element counts, and those it deserialises (pickled tensors, custom and opaque objects)."""
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise ModelLoadError(f"{where} is not a torch.export payload config.")
    raw: dict[str, int] = {}
    pickled: set[str] = set()
    for meta in entries.values():
        if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
            raise ModelLoadError(f"{where} is not a torch.export payload config: an entry has no path_name.")
        path_name = meta["path_name"]
        if meta.get("use_pickle") or (constants and path_name.startswith(_PICKLED_CONSTANT_PREFIXES)):
            pickled.add(path_name)
            continue
        sizes = (meta.get("tensor_meta") or {}).get("sizes") or []
        dims = [s.get("as_int") if isinstance(s, dict) else None for s in sizes]
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
            raise ModelLoadError(
                f"{where}: payload {path_name!r} has sizes {sizes!r}; stored tensors have fixed, "
                "non-negative sizes."
            )
        raw[path_name] = max(raw.get(path_name, 0), math.prod(dims))
    return raw, pickled


def _walk(document: Any) -> Iterator[tuple[str | None, Any]]:
    """Every (key, value) pair of a JSON document, depth first; list items get the list's key."""
    stack: list[tuple[str | None, Any]] = [(None, document)]
    while stack:
        key, value = stack.pop()
        yield key, value
        if isinstance(value, dict):
            stack.extend(value.items())
        elif isinstance(value, list):
            stack.extend((key, item) for item in value)


def _check_program_json(document: Any, where: str) -> None:
    for key, value in _walk(document):
        if key == "expr_str" and isinstance(value, str):
            _check_expression(value, where, guard=False)
        elif key == "guards_code" and isinstance(value, str):
            _check_expression(value, where, guard=True)
        elif isinstance(value, dict) and isinstance(value.get("target"), str) and "inputs" in value:
            _check_operator(value["target"], where)


# Operators a graph node may call. The deserialiser resolves any dotted path under torch,
# operator or math by getattr, so only registered aten/prims operators, higher-order operators,
# and the Python operators export writes for shape arithmetic are let through; everything else
# (torch.serialization.os.system, torch.ops.aten.__class__, ...) is refused.
_DENIED_OPERATORS = frozenset({"save", "from_file", "load_tensor"})
_PYTHON_OPERATORS = frozenset({
    "getitem", "eq", "ne", "le", "ge", "lt", "gt", "neg", "pos", "add", "sub", "mul",
    "truediv", "floordiv", "mod", "pow", "and_", "or_", "lshift", "rshift",
})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@functools.cache
def _registered_operators() -> frozenset[str]:
    """``"aten::linear"`` and the like: every operator registered with the dispatcher."""
    return frozenset(schema.name for schema in torch._C._jit_get_all_schemas())


def _is_safe_operator(target: str) -> bool:
    parts = target.split(".")
    if not all(_IDENTIFIER.match(part) for part in parts):
        return False
    if len(parts) == 2:
        head, name = parts
        return (
            (head == "_operator" and name in _PYTHON_OPERATORS)
            or (head == "math" and not name.startswith("_"))
            or (head == "torch" and name.lstrip("_").startswith("sym_"))
        )
    if len(parts) not in (4, 5) or parts[:2] != ["torch", "ops"]:
        return False
    namespace, name, overload = parts[2], parts[3], parts[4] if len(parts) == 5 else ""
    if namespace == "higher_order":
        return len(parts) == 4 and not name.startswith("_")
    registered = namespace in ("aten", "prims") and f"{namespace}::{name}" in _registered_operators()
    return registered and name not in _DENIED_OPERATORS and not overload.startswith("_")


def _check_operator(target: str, where: str) -> None:
    if not _is_safe_operator(target):
        raise UnsafeFileError(
            f"{where} calls {target!r}, which is not a tensor operator; running the program "
            f"would call it. {WHAT_TO_UPLOAD}"
        )


# Names a shape expression may use: sympy's printed classes and torch's shape functions.
_SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs",
    "floor", "ceiling", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "LessThan",
    "StrictGreaterThan", "GreaterThan", "Equality", "Unequality", "And", "Or", "Not", "Piecewise",
    "ExprCondPair", "true", "false", "oo", "zoo", "nan", "int_oo", "Infinity", "NegativeInfinity",
    "IntInfinity", "NegativeIntInfinity", "One", "Zero", "NegativeOne", "Half", "BooleanTrue",
    "BooleanFalse", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt",
    "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv",
    "IntTrueDiv", "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt",
    "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "TrueDiv", "sym_sqrt", "sym_max",
    "sym_min", "sym_float", "sym_int", "sym_ite",
})
_SHAPE_SYMBOL = re.compile(r"[a-z]+[0-9]+\Z")  # s0, u3, zuf0: export's shape variables
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_SAFE_STRING = re.compile(r"[A-Za-z0-9_.+\-]*\Z")  # names and numbers: no quote to break out of
_EXPRESSION_NODES = (
    ast.Expression, ast.Call, ast.Name, ast.Constant, ast.keyword, ast.BinOp, ast.UnaryOp,
    ast.Compare, ast.BoolOp, ast.Tuple, ast.Load, ast.operator, ast.unaryop, ast.cmpop, ast.boolop,
)


def _check_expression(text: str, where: str, *, guard: bool) -> None:
    """Refuse a shape expression or guard that is more than arithmetic on shapes.

    Export stores both as Python source: sympy.sympify evaluates expressions and guards are
    compiled with exec, so ``__import__('os').system(...)`` in either would run.
    """
    try:
        tree = None if "\n" in text or "#" in text else ast.parse(text, mode="eval")
    except SyntaxError:
        tree = None
    if tree is None or not all(_expression_node_ok(node, guard) for node in ast.walk(tree)):
        raise UnsafeFileError(
            f"{where} holds the shape {'guard' if guard else 'expression'} {text[:120]!r}, which "
            f"is not arithmetic on shapes; loading the program would evaluate it as Python. "
            f"{WHAT_TO_UPLOAD}"
        )


def _expression_node_ok(node: ast.AST, guard: bool) -> bool:
    if isinstance(node, ast.Name):
        allowed = node.id in _SYMPY_NAMES or bool(_SHAPE_SYMBOL.match(node.id))
        return allowed or (guard and node.id in ("L", "math"))
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            return bool(_SAFE_STRING.match(node.value))
        return not isinstance(node.value, bytes)
    if isinstance(node, ast.keyword):
        return node.arg is not None
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name):
            return node.func.id in _SYMPY_NAMES
        return guard and isinstance(node.func, ast.Attribute)  # checked as a node of its own
    if guard and isinstance(node, ast.Attribute):
        on_math = isinstance(node.value, ast.Name) and node.value.id == "math"
        return node.attr in _GUARD_METHODS or (on_math and not node.attr.startswith("_"))
    if guard and isinstance(node, ast.Subscript):
        return True  # L['x'].size()[0]: its value and index are checked as nodes of their own
    return isinstance(node, _EXPRESSION_NODES)
