"""The shape of the package: an I/O-free core, and a locked public surface."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from scripts.structure import circles, import_graph, one_cycle, package_graph

import mieruka

SRC = Path(mieruka.__file__).parent
CORE = SRC / "core"

FORBIDDEN_PACKAGES = {
    "sqlalchemy",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "celery",
    "psycopg",
    "psycopg2",
    "sqlite3",
    "alembic",
    "redis",
}
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
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
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


@pytest.mark.parametrize(
    "source, module, expected",
    [
        ("import sqlalchemy as sa", "mieruka.core.x", {"sqlalchemy"}),
        ("from sqlalchemy.orm import Session", "mieruka.core.x", {"sqlalchemy.orm"}),
        ("def f():\n    import httpx\n", "mieruka.core.x", {"httpx"}),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fastapi import Request\n",
            "mieruka.core.x",
            {"fastapi"},
        ),
        ("from ..store.sql import SqlJobStore", "mieruka.core.x", {"mieruka.store.sql"}),
        ("from .. import web", "mieruka.core.x", {"mieruka.web"}),
        ("from ...bus import memory", "mieruka.core.sub.x", {"mieruka.bus", "mieruka.bus.memory"}),
        ("import importlib\nimportlib.import_module('redis')", "mieruka.core.x", {"redis"}),
        ("import sqlite3", "mieruka.core.x", {"sqlite3"}),
        ("from ..errors import ConfigError\nfrom .job import Job\nimport pydantic", "mieruka.core.x", set()),
        ("from ..storage import x\nimport webbrowser", "mieruka.core.x", set()),  # prefixes only by package
    ],
)
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
    exec(f"from mieruka import {name}", namespace)
    assert namespace[name] is getattr(mieruka, name)


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from mieruka import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(EXPECTED_ALL)


def test_public_errors_share_one_root() -> None:
    for name in EXPECTED_ALL:
        obj = getattr(mieruka, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, mieruka.MierukaError), name


def test_version_is_a_string() -> None:
    assert isinstance(mieruka.__version__, str)
    assert mieruka.__version__.count(".") >= 1


# -- no import circles ---------------------------------------------------------------------------
# Circles known and not yet broken, each as its sorted module names. The test fails when a new
# circle appears, and when one listed here is gone (then strike it from the list).
ALLOWED_CIRCLES: list[list[str]] = []


def test_no_import_circles() -> None:
    graph = package_graph(SRC)
    found = circles(graph)
    new = [c for c in found if c not in ALLOWED_CIRCLES]
    assert not new, "import circles: " + "; ".join(" -> ".join(one_cycle(graph, c)) for c in new)
    gone = [c for c in ALLOWED_CIRCLES if c not in found]
    assert not gone, f"these circles are broken now: strike them from ALLOWED_CIRCLES: {gone}"


@pytest.mark.parametrize(
    "sources, expected",
    [
        ({"m.a": "from . import b", "m.b": "def f():\n    from .a import x\n"}, [["m.a", "m.b"]]),
        (
            {
                "m.a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from m.b import B\n",
                "m.b": "import m.c",
                "m.c": "from .a import A",
            },
            [["m.a", "m.b", "m.c"]],
        ),
        ({"m.a": "from .b import x", "m.b": "import os", "m": "from .a import x"}, []),
        ({"m.a": "import importlib\nimportlib.import_module('m.b')", "m.b": "from .a import y"}, [["m.a", "m.b"]]),
    ],
)
def test_the_circle_finder_finds_circles(sources: dict[str, str], expected: list[list[str]]) -> None:
    assert circles(import_graph(sources, {"m"})) == expected


def test_the_architecture_page_names_every_part() -> None:
    page = (SRC.parent.parent / "docs" / "architecture.md").read_text()
    parts = sorted(
        p.name
        for p in SRC.iterdir()
        if (p.is_dir() and (p / "__init__.py").is_file()) or (p.suffix == ".py" and p.stem != "__init__")
    )
    unnamed = [name for name in parts if f"`{name}" not in page]
    assert not unnamed, f"docs/architecture.md does not say what these parts are: {unnamed}"


# What runs an app sees its Runtime, never the App that declares it (docs/architecture.md).
SEES_ONLY_THE_RUNTIME = ("mieruka.web", "mieruka.server", "mieruka.wiring", "mieruka.runtime")


def test_what_runs_the_app_does_not_import_the_declaration() -> None:
    graph = package_graph(SRC)
    running = [m for m in graph if any(m == p or m.startswith(p + ".") for p in SEES_ONLY_THE_RUNTIME)]
    assert len(running) > 20  # the web layer is there to check
    bad = sorted(m for m in running if {"mieruka.app", "mieruka"} & graph[m])
    assert not bad, f"these modules import mieruka.app (or the package, which imports it): {bad}"


def test_the_public_names_load_at_first_use() -> None:
    """Each public name has a home module, and `import mieruka` alone loads none of them (a CLI
    command or a worker that needs no App does not pay for one)."""
    import subprocess
    import sys

    assert sorted([*mieruka._HOMES, "__version__"]) == sorted(mieruka.__all__)
    code = "import sys, mieruka; print(sorted(m for m in ('mieruka.app', 'pydantic') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


# SQLAlchemy is the schema (tables.py) for Alembic's migrations, SQL sources on any URL, and the
# URLs of other drivers than psycopg's; every statement of the store, the accounts and notifications
# is plain SQL, so that a server never imports it. A new module on this list is a decision.
SQLALCHEMY_USERS = {
    "mieruka.sources.sql",
    "mieruka.store.check",
    "mieruka.store.database",
    "mieruka.store.migrate",
    "mieruka.store.pg_connections",
    "mieruka.store.snapshot",
    "mieruka.store.tables",
}


def sqlalchemy_users() -> set[str]:
    users = set()
    for path in SRC.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[-1] == "tables":
                names = ["sqlalchemy"]  # the schema's module is SQLAlchemy's
            elif isinstance(node, ast.ImportFrom) and any(alias.name == "tables" for alias in node.names):
                names = ["sqlalchemy"]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "deferred" and node.args:
                first = node.args[0]
                names = [first.value] if isinstance(first, ast.Constant) and isinstance(first.value, str) else []
                names = ["sqlalchemy" if n == "mieruka.store.tables" else n for n in names]
            if any(n == "sqlalchemy" or n.startswith("sqlalchemy.") for n in names):
                users.add(module_name(path))
    return users


def test_only_the_schema_migrations_sources_and_urls_use_sqlalchemy() -> None:
    assert sqlalchemy_users() == SQLALCHEMY_USERS
