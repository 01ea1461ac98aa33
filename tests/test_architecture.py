"""The engine's layers, read from its source: cli → workflows → io → graph → kernel.

Every import counts, at the top of a module or inside a function: a lazy import delays a
dependency, it does not remove it. See the README's architecture section and
../shared/DESIGN.md.
"""
from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "compression"
# Bottom to top; the kernel is every module that sits in no subpackage of its own.
LAYERS = ("kernel", "graph", "io", "workflows", "cli")
# The package's face: the public API and ``python -m compression`` may import any layer, and
# only the command line, at the top, imports the public API.
FACADE = {"compression", "compression.__main__"}
ZOO = "compression.io.zoo"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def engine_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    if module in FACADE:
        return "api"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "kernel"


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """``(imported module, names taken from it, line)`` for every import in ``module``."""
    path = engine_modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [alias.name for alias in node.names]
            submodules = [name for name in names if f"{base}.{name}" in engine_modules()]
            found += [(f"{base}.{name}", [], node.lineno) for name in submodules]
            rest = [name for name in names if name not in submodules]
            if rest or not submodules:
                found.append((base, rest, node.lineno))
    return found


def engine_imports(module: str) -> list[tuple[str, list[str], int]]:
    """The imports of other engine modules, each resolved to the module it names."""
    resolved = []
    for target, names, line in imports(module):
        while target and target not in engine_modules():
            target = target.rpartition(".")[0]
        if target.startswith("compression") and target != module:
            resolved.append((target, names, line))
    return resolved


def test_each_layer_imports_only_layers_below_it() -> None:
    wrong = [
        f"{module}:{line} ({layer(module)}) imports {target} ({layer(target)})"
        for module in engine_modules() if module not in FACADE
        for target, _, line in engine_imports(module)
        if (layer(module) != "cli" if target in FACADE else LAYERS.index(layer(target)) > LAYERS.index(layer(module)))
    ]
    assert not wrong, "imports against cli → workflows → io → graph → kernel:\n" + "\n".join(wrong)


def test_engine_modules_import_one_another_without_cycles() -> None:
    graph = {m: {t for t, _, _ in engine_imports(m) if t not in FACADE and not m.startswith(t + ".")}
             for m in engine_modules() if m not in FACADE}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        if module in visiting:
            cycle = visiting[visiting.index(module):] + [module]
            pytest.fail("import cycle: " + " → ".join(cycle))
        visiting.append(module)
        for target in sorted(graph[module]):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_no_engine_module_imports_streamlit() -> None:
    wrong = [f"{m}:{line}" for m in engine_modules() for target, _, line in imports(m)
             if target.split(".")[0] == "streamlit"]
    assert not wrong, f"the engine never imports streamlit: {wrong}"


def test_only_the_zoo_module_imports_the_sample_models() -> None:
    wrong = [f"{m}:{line}" for m in engine_modules() if m != ZOO for target, _, line in imports(m)
             if target.split(".")[0] == "sample_models"]
    assert not wrong, f"only {ZOO} may import sample_models: {wrong}"


def test_no_module_takes_private_names_from_another() -> None:
    wrong = [f"{m}:{line} takes {name} from {target}" for m in engine_modules()
             for target, names, line in engine_imports(m) for name in names
             if name.startswith("_") and not name.startswith("__")]
    assert not wrong, "private names stay in their module:\n" + "\n".join(wrong)


def test_the_checks_see_a_wrong_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel module importing a workflow, inside a function, is found."""
    fake = tmp_path / "compression"
    (fake / "workflows").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "workflows" / "__init__.py").write_text("")
    (fake / "workflows" / "sweep.py").write_text("def sweep(): ...\n")
    (fake / "recipe.py").write_text("def late():\n    from compression.workflows.sweep import sweep\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    engine_modules.cache_clear()
    try:
        with pytest.raises(AssertionError, match=r"compression\.recipe:2 \(kernel\) imports compression\.workflows\.sweep"):
            test_each_layer_imports_only_layers_below_it()
    finally:
        engine_modules.cache_clear()
