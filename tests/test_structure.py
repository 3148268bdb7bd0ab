"""The dependency rules of docs/architecture.md ("Rules"), checked on the source text.

The imports of every module of ``capture``, ``drivers`` and ``simulators`` are read with ``ast``
(nothing is imported or executed) and checked against six rules:

1. no import cycle among the three packages' modules (imports inside functions count too: a lazy
   import hides a cycle, it does not remove it; imports under ``if TYPE_CHECKING:`` do not, they
   never run);
2. ``drivers`` and ``simulators`` import nothing from ``capture``, and ``drivers`` nothing from
   ``simulators``;
3. ``capture`` reaches the simulators only through their entry point, :data:`SIMULATOR_ENTRY`;
4. a vendor library is imported only inside its own package (:data:`VENDORS`; the stdlib's
   ``sqlite3`` counts as one: the library's index is the only SQLite user);
5. no SQL text outside ``capture/library``: a string literal (docstrings aside) that starts with
   an SQL statement;
6. the flats know the sequencer only through its port (:data:`FLATS_SEE`), and the sequencer
   imports nothing from the flats.

Each rule is also run on a small synthetic tree that breaks it, so none of them can pass by
never looking.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("capture", "drivers", "simulators")
# The one module of the simulators that capture may import (the driver registry's entry).
SIMULATOR_ENTRY = "simulators.registry"
# Top-level vendor module -> the package (a prefix of the importer's module name) it belongs to.
VENDORS: dict[str, str] = {
    "PyIndi": "drivers.indi",
    "alpaca": "drivers.alpaca",
    "zwoasi": "drivers.zwo",
    "numba": "capture.combine",
    "sqlite3": "capture.library",
    "apprise": "capture.daemon.alerts",
    "paho": "capture.daemon.alerts",
    "matplotlib": "capture.report",
}
SQL_HOME = "capture.library"
# What capture/flats may import from capture/sequencer: the capture port and the reconnect loop.
FLATS_SEE = ("capture.sequencer.port", "capture.sequencer.reconnect")

SQL_START = re.compile(
    r"""\s*(
        select\s+(distinct\s+)?[\w*"(].*\bfrom\b
      | insert\s+(or\s+\w+\s+)?into\b
      | replace\s+into\b
      | update\s+["\w]+\s+set\b
      | delete\s+from\b
      | create\s+(temp\s+|temporary\s+|unique\s+|virtual\s+)?(table|index|view|trigger)\b
      | pragma\s+\w+
      | alter\s+table\b
      | drop\s+(table|index|view|trigger)\b
      | with\s+(recursive\s+)?\w+(\s*\([^)]*\))?\s+as\s*\(
      | (begin|commit|rollback|vacuum|analyze|attach|detach|savepoint)(\s+\w|\s*;)
      | (?-i:BEGIN|COMMIT|ROLLBACK|VACUUM|ANALYZE)\s*$  # alone: upper case (a lower-case
                                                       # one is a word, e.g. a CLI command)
    )""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Import:
    target: str  # dotted module name as imported (internal ones resolved to a known module)
    line: int
    type_checking: bool


@dataclass
class Module:
    name: str
    path: str  # relative to the repository
    imports: list[Import] = field(default_factory=list)
    sql: list[tuple[int, str]] = field(default_factory=list)


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _normal(name: str) -> str:
    """One spelling for the packages, also under a single installed top-level name."""
    head, _, rest = name.partition(".")
    if head == "calibd" and rest.split(".")[0] in PACKAGES:
        return rest
    return name


class _Reader(ast.NodeVisitor):
    def __init__(self, module: Module, is_package: bool) -> None:
        self.module = module
        self.package = module.name if is_package else module.name.rpartition(".")[0]
        self.type_checking = False
        self.docstrings: set[int] = set()

    def _add(self, target: str, node: ast.AST) -> None:
        self.module.imports.append(Import(_normal(target), getattr(node, "lineno", 0),
                                          self.type_checking))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, base] if base else parts)
        for alias in node.names:
            # ``from pkg import x``: the module pkg.x when there is one, else pkg (resolved later)
            self._add(f"{base}.{alias.name}" if alias.name != "*" else base, node)

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else (
            test.attr if isinstance(test, ast.Attribute) else "")
        if name == "TYPE_CHECKING":
            was, self.type_checking = self.type_checking, True
            for stmt in node.body:
                self.visit(stmt)
            self.type_checking = was
            for stmt in node.orelse:
                self.visit(stmt)
            return
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else (
            func.id if isinstance(func, ast.Name) else "")
        if name in ("import_module", "__import__") and node.args and isinstance(
                node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            self._add(node.args[0].value, node)
        self.generic_visit(node)

    def _note_docstring(self, node: ast.AST) -> None:
        body = getattr(node, "body", [])
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            self.docstrings.add(id(body[0].value))

    def visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            self._note_docstring(node)
        super().visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and id(node) not in self.docstrings:
            self._sql(node.value, node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        text = "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str)
                       else "{}" for v in node.values)
        self._sql(text, node)
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                self.visit(value.value)

    def _sql(self, text: str, node: ast.AST) -> None:
        if SQL_START.match(text):
            first = text.strip().splitlines()[0] if text.strip() else ""
            self.module.sql.append((getattr(node, "lineno", 0), first[:60]))


def read_tree(root: Path) -> dict[str, Module]:
    """Every module of the three packages below ``root``, with its imports and SQL literals."""
    modules: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = Module(_module_name(root, path), path.relative_to(root).as_posix())
            _Reader(module, path.name == "__init__.py").visit(
                ast.parse(path.read_text(encoding="utf-8"), str(path)))
            modules[module.name] = module
    for module in modules.values():  # internal targets: the longest known module name
        resolved: list[Import] = []
        for imp in module.imports:
            target = imp.target
            if target.split(".")[0] in PACKAGES:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if not target:
                    continue
            resolved.append(Import(target, imp.line, imp.type_checking))
        module.imports = list(dict.fromkeys(resolved))
    return modules


def _top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _where(module: Module, line: int) -> str:
    return f"{module.path}:{line}"


def import_cycles(modules: dict[str, Module]) -> list[set[str]]:
    """Strongly connected groups of modules (more than one, or one importing itself)."""
    graph = {name: {i.target for i in m.imports if i.target in modules and not i.type_checking}
             for name, m in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def strong(v: str) -> None:  # Tarjan; the graphs here are a few hundred nodes deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph[v]:
                out.append(group)

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def upward_imports(modules: dict[str, Module]) -> list[str]:
    """drivers/simulators importing capture, drivers importing simulators."""
    bad = []
    for m in modules.values():
        banned = {"drivers": ("capture", "simulators"), "simulators": ("capture",)}.get(
            _top(m.name), ())
        bad += [f"{_where(m, i.line)}: {m.name} imports {i.target}"
                for i in m.imports if _top(i.target) in banned]
    return bad


def simulator_imports(modules: dict[str, Module], entry: str = SIMULATOR_ENTRY
                      ) -> set[tuple[str, str]]:
    """(capture module, simulators module) pairs other than the entry point."""
    return {(m.name, i.target) for m in modules.values() if _top(m.name) == "capture"
            for i in m.imports if _top(i.target) == "simulators" and i.target != entry}


def vendor_imports(modules: dict[str, Module]) -> list[str]:
    bad = []
    for m in modules.values():
        for i in m.imports:
            home = VENDORS.get(_top(i.target))
            if home is not None and not _within(m.name, home):
                bad.append(f"{_where(m, i.line)}: {i.target} outside {home}")
    return bad


def sql_outside_library(modules: dict[str, Module]) -> list[str]:
    return [f"{_where(m, line)}: {text!r}" for m in modules.values()
            if not _within(m.name, SQL_HOME) for line, text in m.sql]


def flats_sequencer_imports(modules: dict[str, Module]) -> list[str]:
    out = []
    for m in modules.values():
        for imp in m.imports:
            if (_within(m.name, "capture.flats") and _within(imp.target, "capture.sequencer")
                    and imp.target not in FLATS_SEE) or (
                    _within(m.name, "capture.sequencer") and _within(imp.target, "capture.flats")):
                out.append(f"{_where(m, imp.line)}: {imp.target}")
    return out


# ----- the rules on this repository -------------------------------------------------------------
@pytest.fixture(scope="module")
def tree() -> dict[str, Module]:
    modules = read_tree(REPO)
    assert len(modules) > 100 and "capture.library.index" in modules
    return modules


def test_no_import_cycles(tree: dict[str, Module]) -> None:
    assert import_cycles(tree) == []


def test_drivers_and_simulators_do_not_import_capture(tree: dict[str, Module]) -> None:
    assert upward_imports(tree) == []


def test_capture_reaches_simulators_only_through_the_entry_point(
        tree: dict[str, Module]) -> None:
    assert sorted(simulator_imports(tree)) == []


def test_vendor_imports_stay_in_their_driver(tree: dict[str, Module]) -> None:
    assert vendor_imports(tree) == []


def test_sql_only_in_the_library(tree: dict[str, Module]) -> None:
    assert sql_outside_library(tree) == []
    # the detector sees the library's own statements (it is not blind)
    assert len(tree["capture.library.index"].sql) >= 10


def test_flats_see_the_sequencer_only_through_its_port(tree: dict[str, Module]) -> None:
    assert flats_sequencer_imports(tree) == []


# ----- each rule fails on a tree that breaks it -------------------------------------------------
def _write(root: Path, files: dict[str, str]) -> dict[str, Module]:
    for package in PACKAGES:
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").touch()
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text, encoding="utf-8")
    return read_tree(root)


def test_a_cycle_is_found_also_through_lazy_and_relative_imports(tmp_path: Path) -> None:
    tree = _write(tmp_path, {
        "capture/flats/runner.py": "from capture.flats import panel\n",
        "capture/flats/panel.py": "def f():\n    from .sky import x\n",
        "capture/flats/sky.py": "import capture.flats.runner\n",
        "capture/flats/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from capture.flats.runner import R\n",
        "capture/ok.py": "from capture.flats import typed\n",
    })
    assert import_cycles(tree) == [{"capture.flats.runner", "capture.flats.panel",
                                    "capture.flats.sky"}]


def test_type_checking_imports_make_no_cycle(tmp_path: Path) -> None:
    tree = _write(tmp_path, {
        "capture/a.py": "from capture.b import B\n",
        "capture/b.py": "import typing\nif typing.TYPE_CHECKING:\n    from capture.a import A\n",
    })
    assert import_cycles(tree) == []


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    tree = _write(tmp_path, {
        "drivers/indi/camera.py": "def f():\n    from capture.errors import PlanError\n",
        "drivers/alpaca/x.py": "import simulators.sky\n",
        "simulators/camera.py": "from calibd.capture.config import Config\n",
        "simulators/ok.py": "from drivers.contracts import Camera\n",
        "drivers/contracts.py": "",
    })
    assert [b.split(": ", 1)[1] for b in upward_imports(tree)] == [
        "drivers.alpaca.x imports simulators", "drivers.indi.camera imports capture",
        "simulators.camera imports capture"]


def test_simulator_internals_are_found(tmp_path: Path) -> None:
    entry = SIMULATOR_ENTRY.split(".")
    tree = _write(tmp_path, {
        "/".join(entry) + ".py": "",
        "simulators/sky.py": "",
        "capture/devices.py": f"from {'.'.join(entry[:-1])} import {entry[-1]}\n"
                              "def f():\n    from simulators.sky import Sky\n",
        "capture/cli/sim.py": "import importlib\nm = importlib.import_module('simulators.sky')\n",
    })
    assert simulator_imports(tree) == {("capture.devices", "simulators.sky"),
                                       ("capture.cli.sim", "simulators.sky")}


def test_a_vendor_import_outside_its_driver_is_found(tmp_path: Path) -> None:
    tree = _write(tmp_path, {
        "drivers/indi/_conn.py": "def f():\n    import PyIndi\n",
        "drivers/alpaca/camera.py": "from alpaca.camera import Camera\nimport zwoasi\n",
        "capture/combine/kernels.py": "import numba\n",
        "capture/masters/fast.py": "import numba.core\n",
        "capture/daemon/state.py": "import sqlite3\n",
        "capture/library/index.py": "import sqlite3\n",
    })
    assert sorted(b.split(": ", 1)[1] for b in vendor_imports(tree)) == [
        "numba.core outside capture.combine", "sqlite3 outside capture.library",
        "zwoasi outside drivers.zwo"]


def test_sql_text_outside_the_library_is_found(tmp_path: Path) -> None:
    tree = _write(tmp_path, {
        "capture/flats/memory.py": (
            '"""Select the flat from memory; update it when it changes."""\n'
            "def f(db, t):\n"
            "    db.execute('select exposure_s FROM frames WHERE id=?')\n"
            "    db.execute(f'INSERT OR REPLACE INTO {t}(a) VALUES(?)')\n"
            '    db.execute("  update frames set x=1")\n'
            '    db.execute("WITH t AS (SELECT 1) SELECT * FROM t")\n'
            '    db.execute("PRAGMA journal_mode=WAL")\n'
            '    db.execute("CREATE TABLE IF NOT EXISTS x(a)")\n'
            '    db.execute("DELETE FROM x")\n'
            '    db.execute("begin immediate")\n'
            '    db.execute("ANALYZE")\n'
            '    return "Update the filter", "select a filter", "Create the folder", "analyze"\n'),
        "capture/library/index.py": "Q = 'SELECT * FROM frames'\n",
    })
    found = sql_outside_library(tree)
    assert [f.split(":")[1] for f in found] == ["3", "4", "5", "6", "7", "8", "9", "10", "11"]
    assert tree["capture.library.index"].sql == [(1, "SELECT * FROM frames")]


def test_flats_reaching_into_the_sequencer_are_found(tmp_path: Path) -> None:
    tree = _write(tmp_path, {
        "capture/sequencer/port.py": "",
        "capture/sequencer/reconnect.py": "",
        "capture/sequencer/sequencer.py": "def f():\n    from capture.flats import runner\n",
        "capture/flats/runner.py": "from capture.sequencer.port import CapturePort\n"
                                   "from capture.sequencer import reconnect\n"
                                   "from capture.sequencer.sequencer import Sequencer\n",
        "capture/flats/panel.py": "import capture.sequencer\n",
    })
    assert sorted(flats_sequencer_imports(tree)) == [
        "capture/flats/panel.py:1: capture.sequencer",
        "capture/flats/runner.py:3: capture.sequencer.sequencer",
        "capture/sequencer/sequencer.py:2: capture.flats.runner",
    ]


def bare_imports(root: Path, folders: tuple[str, ...]) -> list[str]:
    """Imports that spell a package without the one installed name (``capture.x`` instead of
    ``calibd.capture.x``): in an installed calibd they would not resolve, and in the repository
    they would load a second copy of the module."""
    found: list[str] = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Call) and node.args and isinstance(
                        node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    func = node.func
                    callee = func.attr if isinstance(func, ast.Attribute) else (
                        func.id if isinstance(func, ast.Name) else "")
                    if callee in ("import_module", "__import__"):
                        names = [node.args[0].value]
                found += [f"{path.relative_to(root).as_posix()}:{node.lineno}: {n}"
                          for n in names if _top(n) in PACKAGES]
    return found


def test_every_import_goes_through_the_one_installed_name() -> None:
    folders = ("capture", "drivers", "simulators", "tests", "benchmarks")
    assert bare_imports(REPO, folders) == []


def test_a_bare_package_import_is_found(tmp_path: Path) -> None:
    _write(tmp_path, {
        "capture/__init__.py": "",
        "capture/a.py": "from calibd.drivers import b\nfrom drivers import c\n",
        "tests/t.py": "import importlib\nimportlib.import_module('simulators.sky')\n",
    })
    assert bare_imports(tmp_path, ("capture", "tests")) == [
        "capture/a.py:2: drivers", "tests/t.py:2: simulators.sky"]
