"""Modules imported at their first use, for what a process may never need: a server on SQLite that
runs no statement through SQLAlchemy never imports it (a quarter of its start, 12 MB).

    if TYPE_CHECKING:
        import sqlalchemy as sa
    else:
        sa = deferred("sqlalchemy")

This is PEP 810's `lazy import` (Python 3.15) for the versions before it. `importlib.util.LazyLoader`
is not used: on Python 3.11 a thread can see its module half-loaded while another loads it
(CPython gh-114763, fixed in 3.12.3), and the server's threads share these modules.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class Deferred:
    """Stands for the module `name` and imports it at the first attribute asked for (the import
    system's lock makes that safe from any thread); later lookups find the module's names here."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module: ModuleType = importlib.import_module(self.__dict__["_name"])
        value = getattr(module, attr)
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<deferred module {self.__dict__['_name']!r}>"


def deferred(name: str) -> Any:
    """The module `name`, imported when it is first used."""
    return Deferred(name)
