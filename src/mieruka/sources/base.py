"""The data source interface: read a table once, within limits. One module per kind implements it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Limits:
    """Guardrails of one read: the longest it may take, and the most rows it may return."""

    timeout: float
    max_rows: int


@dataclass
class Fetched:
    frame: pd.DataFrame
    truncated: bool = False  # the source had more rows than max_rows


class DataSource(Protocol):
    kind: str

    def fetch(self, limits: Limits) -> Fetched:
        """Read the table once: at most `limits.max_rows` rows, stopped after `limits.timeout` where
        the driver allows. Raises on failure. Never called twice at once for one source."""

    def changed(self) -> bool:
        """False when reading again would give the same table (an unchanged file); else True."""

    def cancel(self) -> None:
        """Ask a read running in another thread to stop, where the driver allows; else nothing."""

    def describe(self) -> str:
        """What is read, for people (no passwords)."""

    def warning(self) -> str | None:
        """A guardrail this source's database or driver does not enforce (e.g. read-only), learnt
        when it last connected, for its status; None when they all hold."""

    def close(self) -> None:
        """Release connections."""
