"""The shape of the package: an I/O-free core, and a locked public surface."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import mieruka

SRC = Path(mieruka.__file__).parent
CORE = SRC / "core"

FORBIDDEN_PACKAGES = {"sqlalchemy", "fastapi", "starlette", "uvicorn", "httpx", "celery", "psycopg",
                      "psycopg2", "sqlite3", "alembic", "redis"}
FORBIDDEN_MIERUKA = {"mieruka.store", "mieruka.web", "mieruka.executors", "mieruka.bus"}

# The public surface. Changing it is a decision: update this list on purpose.
EXPECTED_ALL = [
    "App",
    "ArtifactInfo",
    "ConfigError",
    "ConflictError",
    "File",
    "Job",
    "JobNotFound",
    "JobRecord",
    "JobStatus",
    "JobTimeoutError",
    "MierukaError",
    "MissingExtraError",
    "NotFoundError",
    "PayloadTooLarge",
    "Pipeline",
    "Settings",
    "TaskNotFound",
    "ValidationError",
    "__version__",
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute names of every module `source` imports, anywhere in the file (also inside
    functions and `if TYPE_CHECKING:` blocks), relative imports resolved against `module`."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from . import store` imports the submodule mieruka.store
            found.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.add(str(node.args[0].value))
    return found


def violations(names: set[str]) -> set[str]:
    bad = set()
    for name in names:
        top = name.split(".")[0]
        if top in FORBIDDEN_PACKAGES:
            bad.add(name)
        if any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MIERUKA):
            bad.add(name)
    return bad


def source_of(module: str) -> tuple[str, bool] | None:
    """(source, is_package) of a mieruka module, None for names that are not modules (e.g. the
    `ConfigError` in `mieruka.errors.ConfigError`)."""
    rel = Path(*module.split("."))
    package = SRC.parent / rel / "__init__.py"
    if package.is_file():
        return package.read_text(), True
    plain = (SRC.parent / rel).with_suffix(".py")
    if plain.is_file():
        return plain.read_text(), False
    return None


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_core_folder_has_modules() -> None:
    names = {p.stem for p in core_modules()}
    assert {"__init__", "params", "task", "job", "status", "schedule"} <= names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_core_module_imports_no_io_library(path: Path) -> None:
    module = module_name(path)
    found = imports_of(path.read_text(), module, path.name == "__init__.py")
    assert not violations(found), f"{module} imports {sorted(violations(found))}: the core must stay I/O-free"


def test_core_does_not_reach_io_through_other_mieruka_modules() -> None:
    """Follow the core's imports of other mieruka modules (errors, durations, ...): none of them may
    pull in a database, web or executor module either."""
    seen: set[str] = set()
    todo = [module_name(p) for p in core_modules()]
    chains: dict[str, str] = {m: m for m in todo}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        found = source_of(module)
        if found is None:
            continue
        source, is_package = found
        imported = imports_of(source, module, is_package)
        bad = violations(imported)
        assert not bad, f"the core reaches {sorted(bad)} via {chains[module]}"
        for name in imported:
            if name.startswith("mieruka.") and name not in seen and source_of(name) is not None:
                chains.setdefault(name, f"{chains[module]} -> {name}")
                todo.append(name)
    assert "mieruka.errors" in seen  # the walk did follow the core's imports


@pytest.mark.parametrize("source, module, expected", [
    ("import sqlalchemy as sa", "mieruka.core.x", {"sqlalchemy"}),
    ("from sqlalchemy.orm import Session", "mieruka.core.x", {"sqlalchemy.orm"}),
    ("def f():\n    import httpx\n", "mieruka.core.x", {"httpx"}),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fastapi import Request\n",
     "mieruka.core.x", {"fastapi"}),
    ("from ..store.sql import SqlJobStore", "mieruka.core.x", {"mieruka.store.sql"}),
    ("from .. import web", "mieruka.core.x", {"mieruka.web"}),
    ("from ...bus import memory", "mieruka.core.sub.x", {"mieruka.bus", "mieruka.bus.memory"}),
    ("import importlib\nimportlib.import_module('redis')", "mieruka.core.x", {"redis"}),
    ("import sqlite3", "mieruka.core.x", {"sqlite3"}),
    ("from ..errors import ConfigError\nfrom .job import Job\nimport pydantic", "mieruka.core.x", set()),
    ("from ..storage import x\nimport webbrowser", "mieruka.core.x", set()),  # prefixes only by package
])
def test_the_import_checker_catches_forbidden_imports(source: str, module: str, expected: set[str]) -> None:
    assert violations(imports_of(source, module)) >= expected
    if not expected:
        assert violations(imports_of(source, module)) == set()


def test_public_surface_is_locked() -> None:
    assert mieruka.__all__ == EXPECTED_ALL


def test_all_is_sorted_and_unique() -> None:
    assert list(mieruka.__all__) == sorted(mieruka.__all__)
    assert len(set(mieruka.__all__)) == len(mieruka.__all__)


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_public_name_is_importable(name: str) -> None:
    module = importlib.import_module("mieruka")
    assert hasattr(module, name), f"mieruka.{name} is listed in __all__ but missing"
    namespace: dict[str, object] = {}
    exec(f"from mieruka import {name}", namespace)  # noqa: S102 - the import statement users write
    assert namespace[name] is getattr(mieruka, name)


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from mieruka import *", namespace)  # noqa: S102
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(EXPECTED_ALL)


def test_public_errors_share_one_root() -> None:
    for name in EXPECTED_ALL:
        obj = getattr(mieruka, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, mieruka.MierukaError), name


def test_version_is_a_string() -> None:
    assert isinstance(mieruka.__version__, str)
    assert mieruka.__version__.count(".") >= 1
