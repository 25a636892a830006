"""pandas on demand: imported only when a source is used, with an error naming the extra."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..errors import MissingExtraError
from .base import Fetched

if TYPE_CHECKING:
    import pandas as pd


def optional(module: str, feature: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(feature, extra) from None


def pandas() -> Any:
    return optional("pandas", "data sources (pandas)", "data")


def to_frame(value: Any, what: str) -> pd.DataFrame:
    """A DataFrame from a DataFrame, a list of records (dicts or tuples) or a dict of columns."""
    pd = pandas()
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, dict) or (isinstance(value, list) and (not value or isinstance(value[0], dict))):
        return pd.DataFrame(value)
    if isinstance(value, list):
        fields = getattr(value[0], "_fields", None)
        return pd.DataFrame.from_records(value, columns=list(fields) if fields else None)
    raise TypeError(
        f"{what} returned {type(value).__name__}; expected a pandas DataFrame, a list of records or a dict of columns"
    )


def capped(frame: pd.DataFrame, max_rows: int) -> tuple[pd.DataFrame, bool]:
    if len(frame) > max_rows:
        return frame.iloc[:max_rows], True
    return frame, False


def from_rows(rows: Sequence[Sequence[Any]], columns: list[str], max_rows: int) -> Fetched:
    """What a database read gives: up to `max_rows` of the rows fetched (fetch one more than
    `max_rows` to learn whether the table was cut short)."""
    frame = pandas().DataFrame.from_records([tuple(r) for r in rows[:max_rows]], columns=columns)
    return Fetched(frame, len(rows) > max_rows)
