"""The layout holds: seqbench's modules import one way (no cycle, function-local imports included; lower
wings never import higher ones), plugins see only the public face, and the wheel lists every package.

The import graph is read from the source with ``ast``: every ``import`` and ``from ... import``, at module
level or inside a function, except those under ``if TYPE_CHECKING:`` (annotations, not dependencies).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "seqbench"
WINGS = ("configure", "train", "sweeps", "analyse")
# the ground every wing stands on: it imports no wing (only each other)
GROUND = ("contracts", "registry", "hookspecs", "results", "errors", "capabilities", "process")
# which wings (and top-level modules) each wing may import, besides the ground; the flow of a run
ALLOWED = {
    "configure": set(),
    "train": {"configure"},
    "sweeps": {"train", "configure"},
    "analyse": {"train", "configure"},
    "api": {"train", "configure"},  # the face re-exports names from where they live
    "bench": {"train", "configure"},
}
PUBLIC_FACE = {"seqbench.api", "seqbench.hookspecs"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, package: str | None) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against ``package``)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for stmt in node.body for n in ast.walk(stmt)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = (package or "").split(".")
                base = ".".join([*anchor[: len(anchor) - node.level + 1], *([base] if base else [])])
            # `from pkg import name` may import the submodule pkg.name
            found.update([base, *(f"{base}.{alias.name}" for alias in node.names)])
    return found


def seqbench_graph() -> dict[str, set[str]]:
    files = {module_name(f): f for f in PACKAGE.rglob("*.py")}

    def owner(name: str) -> str | None:  # the seqbench module a dotted name lives in
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = {owner(t) for t in imported_modules(path, package) if t.split(".")[0] == "seqbench"}
        graph[name] = {t for t in targets if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def part(module: str) -> str:
    """The wing or top-level module a seqbench module belongs to (``seqbench.train.lit`` -> ``train``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "seqbench"


def test_the_cycle_finder_finds_a_cycle_through_a_function_local_import(tmp_path):
    pkg = tmp_path / "seqbench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from seqbench.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from seqbench import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from seqbench import a\n")
    (pkg / "d.py").write_text("from seqbench import c\n")
    files = {module_name(f, tmp_path): f for f in pkg.rglob("*.py")}
    graph = {name: {t for t in imported_modules(f, "seqbench") if t in files and t != name}
             for name, f in files.items()}
    assert cycles(graph) == [["seqbench.a", "seqbench.b"]]  # c -> a is an annotation, not an edge


def test_seqbench_has_no_import_cycle():
    assert cycles(seqbench_graph()) == []


def test_lower_wings_never_import_higher_ones():
    wrong = []
    for module, targets in seqbench_graph().items():
        home = part(module)
        for target in targets:
            there = part(target)
            if there == home or there in GROUND or target == "seqbench":
                continue
            if home in GROUND or (home in ALLOWED and there not in ALLOWED[home]):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_nothing_below_the_command_line_imports_it():
    importers = {m for m, targets in seqbench_graph().items() if any(part(t) == "cli" for t in targets)}
    assert {part(m) for m in importers} <= {"cli"}


def test_the_top_level_is_small_and_the_wings_are_there():
    top = [f.stem for f in PACKAGE.glob("*.py") if f.name != "__init__.py"]
    assert len(top) <= 12, sorted(top)
    assert {d.name for d in PACKAGE.iterdir() if (d / "__init__.py").exists()} >= {*WINGS, "cli"}


@pytest.mark.parametrize("folder", ["plugins", "tasks", "examples"])
def test_plugins_import_only_the_public_face(folder):
    reached = {}
    for path in (ROOT / folder).rglob("*.py"):
        for target in imported_modules(path, None):
            if target.split(".")[0] == "seqbench" and not any(target == face or target.startswith(face + ".")
                                                                for face in PUBLIC_FACE):
                reached.setdefault(str(path.relative_to(ROOT)), set()).add(target)
    assert reached == {}


def test_every_name_of_the_public_face_imports():
    import seqbench.api as api

    missing = [name for name in api.__all__ if getattr(api, name, None) is None]
    assert missing == []
    assert api.TensorTaskData.__module__ == "seqbench.train.data"  # the lazy names are the real ones
    assert api.hookimpl is __import__("seqbench.hookspecs", fromlist=["hookimpl"]).hookimpl


def test_the_face_loads_without_torch_until_a_task_data_name_is_read():
    import subprocess

    code = ("import sys; import seqbench.api as api; before = 'torch' in sys.modules; api.TensorTaskData; "
            "print(before, 'lightning' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_the_wheel_lists_every_package_and_the_claims_files():
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {module_name(f.parent) for f in PACKAGE.rglob("__init__.py")}
    assert packages <= set(setuptools["packages"])
    claims_package = module_name(next(PACKAGE.rglob("claims")).parent / "__init__.py")
    assert setuptools["package-data"][claims_package] == ["claims/*.json"]
