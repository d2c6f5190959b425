"""Import structure, computed from the code: every ``querycraft/**/*.py`` parsed with ``ast``,
imports inside functions included.

(a) No import cycle among querycraft modules: an edge goes to the module an import names
    (``from querycraft.correction.rules import reformat`` names the submodule, ``from
    querycraft.db import explain_sqlite`` the module querycraft.db), not to the packages above
    it, which Python initialises first in any case.
(b) No module uses another module's private name: ``from querycraft.x import _y``, ``x._y``
    where ``x`` is an imported querycraft module, or ``obj._y`` where ``_y`` is defined only in
    another querycraft module (a private method called from outside, ``backend._complete``).
    querycraft, tests and bench are checked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

PACKAGE = "querycraft"
CHECKED_DIRS = ("querycraft", "tests", "bench")

def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    """querycraft's modules by dotted name."""
    return {_module_name(p): p for p in sorted((PROJECT_ROOT / PACKAGE).rglob("*.py"))}


def _is_private(name: str) -> bool:
    # Not dunders, nor Hydra's keys (_target_, _self_): both are public by convention.
    return name.startswith("_") and not name.endswith("_")


def _resolve_from(node: ast.ImportFrom, importer: str, path: Path) -> str:
    """The absolute module of ``from <module> import ...`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _owning_module(dotted: str) -> str | None:
    """The longest querycraft module that ``dotted`` starts with."""
    modules = _modules()
    while dotted:
        if dotted in modules:
            return dotted
        dotted = dotted.rpartition(".")[0]
    return None


def _imported_modules(path: Path) -> Iterator[str]:
    """The querycraft modules a file imports, anywhere in it."""
    importer = _module_name(path)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _owning_module(alias.name)
                if target is not None:
                    yield target
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, importer, path)
            for alias in node.names:
                target = _owning_module(f"{base}.{alias.name}") or _owning_module(base)
                if target is not None:
                    yield target


def _graph() -> dict[str, set[str]]:
    return {name: set(_imported_modules(path)) - {name} for name, path in _modules().items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


@cache
def _private_definitions() -> dict[str, frozenset[str]]:
    """The private names each querycraft module defines: module level and in its classes."""
    out = {}
    for name, path in _modules().items():
        defined = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for leaf in ast.walk(target):
                        if isinstance(leaf, ast.Name):
                            defined.add(leaf.id)
                        elif isinstance(leaf, ast.Attribute):
                            defined.add(leaf.attr)  # self._x = ...
        out[name] = frozenset(n for n in defined if _is_private(n))
    return out


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _private_uses(path: Path, rel: str | None = None) -> set[str]:
    """Where a file uses another querycraft module's private name, one line per name.

    ``rel``: the file's path as reported (default: relative to the project).
    """
    rel = rel or path.relative_to(PROJECT_ROOT).as_posix()
    own = _module_name(path) if rel.startswith(f"{PACKAGE}/") else None
    tree = ast.parse(path.read_text(), str(path))
    aliases: dict[str, str] = {}  # local name -> querycraft module it stands for
    uses = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _owning_module(alias.name) == alias.name:
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        aliases[alias.name.partition(".")[0]] = alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, own or "", path)
            if _owning_module(base) is None:
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if _owning_module(full) == full:
                    aliases[alias.asname or alias.name] = full
                if _is_private(alias.name) and _owning_module(base) != own:
                    uses.add(f"{rel}: {full}")
    definitions = _private_definitions()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
            continue
        dotted = _dotted(node.value)
        head = dotted.partition(".")[0] if dotted else None
        if dotted and head in aliases:
            module = _owning_module(aliases[head] + dotted[len(head):])
            if module is not None and module != own and node.attr not in _modules():
                uses.add(f"{rel}: {module}.{node.attr}")
                continue
        if head in ("self", "cls") and dotted == head:
            continue  # the class's own (or an inherited) attribute
        if own is not None and node.attr in definitions[own]:
            continue
        owners = sorted(m for m, names in definitions.items() if node.attr in names)
        if owners:
            what = ast.unparse(node)
            uses.add(f"{rel}: {what} ({', '.join(owners)})")
    return uses


def _all_private_uses() -> set[str]:
    uses: set[str] = set()
    for folder in CHECKED_DIRS:
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            uses |= _private_uses(path)
    return uses


def test_graph_sees_imports_inside_functions() -> None:
    graph = _graph()
    # The local import in validate().
    assert "querycraft.engines.sqlite" in graph["querycraft.correction"]
    assert "querycraft.ddl" in graph["querycraft.db"]  # the local import in columns_by_table()
    assert "querycraft.correction.rules.reformat" in graph["querycraft.correction.rules"]


def test_cycle_detection_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_ddl_imports_neither_db_nor_correction() -> None:
    graph = _graph()
    seen, todo = set(), ["querycraft.ddl"]
    while todo:  # everything querycraft.ddl pulls in, directly or not
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    assert not {m for m in seen if m == "querycraft.db" or m.startswith("querycraft.correction")}


def test_private_name_detection(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from querycraft.sql import _lex\nimport querycraft.sql as s\n"
                     "from querycraft import runs\n\n\ndef f(backend):\n    s._significant('x')\n"
                     "    runs._x\n    backend._complete()\n    cfg.service._target_\n")
    rel = "tests/probe.py"
    uses = _private_uses(probe, rel)
    assert uses == {f"{rel}: querycraft.sql._lex", f"{rel}: querycraft.sql._significant",
                    f"{rel}: querycraft.runs._x",
                    f"{rel}: backend._complete (querycraft.backends)"}


@pytest.mark.slow
def test_no_private_name_uses() -> None:
    assert sorted(_all_private_uses()) == []


def _service_imports(graph: dict[str, set[str]]) -> list[str]:
    """Edges from one service module to another (the registry, querycraft.services, aside):
    a component two services need lives in a core module they both import."""
    services = "querycraft.services."
    return sorted(f"{a} -> {b}" for a, targets in graph.items() if a.startswith(services)
                  for b in targets if b.startswith(services) and b != a)


def test_service_import_detection() -> None:
    graph = {"querycraft.services.ask": {"querycraft.services.ingest", "querycraft.db"},
             "querycraft.services.pipeline": {"querycraft.services"}}
    assert _service_imports(graph) == ["querycraft.services.ask -> querycraft.services.ingest"]


def test_no_service_imports_another_service() -> None:
    assert _service_imports(_graph()) == []


def _reexports(path: Path) -> list[str]:
    """Names a module lists in ``__all__`` but imports from outside itself: a package may
    list what its own submodules define, a plain module only its own names (callers import a
    name from where it lives)."""
    name = _module_name(path)
    own_tree = name if path.name == "__init__.py" else None
    tree = ast.parse(path.read_text(), str(path))
    imported: dict[str, str] = {}
    listed: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, name, path)
            for alias in node.names:
                imported[alias.asname or alias.name] = base
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            listed = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
    return sorted(f"{name}.{n} (from {imported[n]})" for n in listed if n in imported
                  and not (own_tree and (imported[n] == own_tree
                                         or imported[n].startswith(own_tree + "."))))


def test_reexport_detection(tmp_path: Path) -> None:
    module = PROJECT_ROOT / PACKAGE / "probe_reexport.py"
    try:
        module.write_text("from querycraft.targets import DatabaseTarget\n\n"
                          "__all__ = ['DatabaseTarget', 'mine']\n\n\ndef mine():\n    pass\n")
        assert _reexports(module) == [
            "querycraft.probe_reexport.DatabaseTarget (from querycraft.targets)"]
    finally:
        module.unlink()


def test_no_module_reexports_another_modules_names() -> None:
    found = [r for path in _modules().values() for r in _reexports(path)]
    assert found == []
