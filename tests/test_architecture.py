"""The core knows no platform and no I/O library, and adapters know the core only through its ports
(../shared/DESIGN.md)."""

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
ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core"
ADAPTERS = ROOT / "adapters"


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


def imported_names(source: str) -> set[str]:
    """Every module a source imports, in full, `from core import engine` as `core.engine` (type-only
    imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def beyond_the_ports(names: set[str]) -> set[str]:
    """What an adapter may not import: the engine (it is fed through `core.ports.EventSink`) and the
    composition root."""
    return {
        n for n in names if n == "core.engine" or n.startswith("core.engine.") or n.split(".")[0] == "bot"
    }


@pytest.mark.parametrize("path", sorted(ADAPTERS.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_adapter_module_imports_neither_the_engine_nor_bot(path: Path) -> None:
    assert not beyond_the_ports(imported_names(path.read_text()))


def test_the_adapter_check_catches_the_engine_and_bot() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from core.engine import Engine\n"
        "from core import engine\nimport bot.app\nfrom core.ports import EventSink\n"
    )
    assert beyond_the_ports(imported_names(source)) == {"core.engine", "core.engine.Engine", "bot.app"}
    assert not beyond_the_ports(imported_names("from core.events import Reply\nimport discord\n"))


def test_adapters_have_modules_to_check() -> None:
    assert {p.parent.name for p in ADAPTERS.rglob("adapter.py")} >= {"console", "discord", "matrix"}
