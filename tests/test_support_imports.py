"""The test modules share helpers one way: from ``tests.support`` (and the server, contract and
fixture modules), always spelled ``tests.<module>``; never from another test module or from
conftest (pytest imports conftest itself, and a second import under another name makes two
copies of its state)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def import_problems(folder: Path) -> list[str]:
    """``file:line: what`` for every import of a test module, of conftest, relative, or of a
    module of ``folder`` without the ``tests.`` prefix."""
    local = {p.stem for p in folder.glob("*.py")}
    problems: list[str] = []
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    problems.append(f"{path.name}:{node.lineno}: relative import")
                    continue
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] in local and parts[0] != "tests":
                    problems.append(f"{path.name}:{node.lineno}: {name} without 'tests.'")
                elif parts[0] == "tests" and len(parts) > 1 and (
                        parts[1] == "conftest" or parts[1].startswith("test_")):
                    problems.append(f"{path.name}:{node.lineno}: helpers from {name} "
                                    "(move them to tests/support.py)")
    return problems


def test_helpers_come_from_the_support_modules_only() -> None:
    assert import_problems(TESTS) == []


def test_the_check_finds_each_kind_of_stray_import(tmp_path: Path) -> None:
    (tmp_path / "support.py").write_text("X = 1\n")
    (tmp_path / "test_a.py").write_text("Y = 2\n")
    (tmp_path / "test_b.py").write_text(
        "from tests.test_a import Y\n"
        "from tests.conftest import X\n"
        "from support import X as Z\n"
        "from .support import X as W\n"
        "def f():\n    import tests.test_a\n"
        "from tests.support import X as OK\n")
    found = import_problems(tmp_path)
    assert [p.split(":")[1] for p in found] == ["1", "2", "3", "4", "6"], found
