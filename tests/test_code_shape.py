"""The code's shape the brief asks for: modules under 700 lines, and each package of posd/
and drivers/ with a face (protocols/ is flat, like h11: its modules are its faces)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CODE = ("posd", "drivers", "protocols", "tests", "bench", "fuzz")
MAX_LINES = 700


def _modules() -> list[Path]:
    return sorted(p for top in CODE for p in (ROOT / top).rglob("*.py"))


@pytest.mark.parametrize("module", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_stays_under_700_lines(module: Path) -> None:
    lines = len(module.read_text(encoding="utf-8").splitlines())
    assert lines < MAX_LINES, f"{module.relative_to(ROOT)} has {lines} lines: split it"


@pytest.mark.parametrize(
    "face",
    sorted(p for top in ("posd", "drivers") for p in (ROOT / top).rglob("__init__.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_a_package_face_has_a_docstring_and_all(face: Path) -> None:
    tree = ast.parse(face.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{face.relative_to(ROOT)}: no docstring"
    names = [
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    ]
    assert "__all__" in names, f"{face.relative_to(ROOT)}: no __all__"
