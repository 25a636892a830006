"""A Python function as a source: it returns a DataFrame, a list of records or a dict of columns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Fetched, Limits
from .frames import capped, to_frame


class FunctionSource:
    kind = "function"

    def __init__(self, func: Callable[[], Any]) -> None:
        self.func = func

    def fetch(self, limits: Limits) -> Fetched:
        frame, truncated = capped(to_frame(self.func(), f"source function {self.describe()}"), limits.max_rows)
        return Fetched(frame, truncated)

    def changed(self) -> bool:
        return True

    def cancel(self) -> None:
        pass  # a Python function cannot be stopped from outside; the refresher reports the overrun

    def warning(self) -> str | None:
        return None

    def describe(self) -> str:
        return f"{getattr(self.func, '__module__', '?')}.{getattr(self.func, '__qualname__', repr(self.func))}()"

    def close(self) -> None:
        pass
