"""DESIGN §1: imports point down the layer list; no package imports one above it, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = [
    "lethe",
    "dsr",
    "retention",
    "connectors",
    "policies",
    "audit_log",
    "records",
]  # top → bottom


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(LAYERS)


def upward_imports() -> list[str]:
    problems = []
    for package in LAYERS:
        rank = LAYERS.index(package)
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in imported_packages(path):
                if LAYERS.index(target) < rank:
                    problems.append(f"{path.relative_to(ROOT)} imports {target} (above {package})")
    return problems


def test_no_package_imports_a_layer_above_it() -> None:
    assert upward_imports() == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from dsr import service\nimport lethe.app\nfrom records import db\n")
    assert imported_packages(bad) == {"dsr", "lethe", "records"}


@pytest.mark.parametrize("package", LAYERS)
def test_every_layer_exists(package: str) -> None:
    assert (ROOT / package / "__init__.py").is_file()
