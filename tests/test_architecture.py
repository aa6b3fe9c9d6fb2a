"""The core knows no platform and no I/O library (../shared/DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FORBIDDEN = {
    "discord",
    "nio",
    "sqlalchemy",
    "alembic",
    "apscheduler",
    "aiohttp",
    "asyncpg",
    "aiosqlite",
    "yaml",
    "pydantic",
    "adapters",
    "bot",
}
CORE = Path(__file__).resolve().parent.parent / "core"


def imported_modules(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_nothing_forbidden(path: Path) -> None:
    assert not imported_modules(path.read_text()) & FORBIDDEN


def test_the_check_catches_a_forbidden_import() -> None:
    assert imported_modules("import nio.api\nfrom sqlalchemy import select\n") == {
        "nio",
        "sqlalchemy",
    }
    assert imported_modules("from core.refs import UserRef\n") == {"core"}


def test_core_has_modules_to_check() -> None:
    assert len(list(CORE.rglob("*.py"))) >= 6
