"""A CSV, Excel or Parquet file as a source, read again only when it changes (size or mtime)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .base import Fetched, Limits
from .frames import capped, optional, pandas

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "csv",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".xls": "excel",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class FileSource:
    kind = "file"

    def __init__(self, path: str | os.PathLike[str], format: str | None = None, **read_options: Any) -> None:
        self.path = Path(path)
        self.format = format or FORMATS.get(self.path.suffix.lower(), "")
        if self.format not in ("csv", "tsv", "excel", "parquet"):
            raise ConfigError(f"cannot tell the format of {self.path.name}: pass format='csv', 'excel' or 'parquet'")
        self.read_options = read_options
        self._read_stamp: tuple[int, int] | None = None

    def _stamp(self) -> tuple[int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def changed(self) -> bool:
        stamp = self._stamp()
        return stamp is None or stamp != self._read_stamp

    def fetch(self, limits: Limits) -> Fetched:
        pd = pandas()
        stamp = self._stamp()
        if stamp is None:
            raise FileNotFoundError(f"no such file: {self.path}")
        options = dict(self.read_options)
        if self.format in ("csv", "tsv"):
            if self.format == "tsv":
                options.setdefault("sep", "\t")
            frame = pd.read_csv(self.path, nrows=limits.max_rows + 1, **options)
        elif self.format == "excel":
            optional("openpyxl", "Excel file sources (openpyxl)", "data")
            frame = pd.read_excel(self.path, nrows=limits.max_rows + 1, **options)
        else:
            optional("pyarrow", "Parquet file sources (pyarrow)", "data")
            frame = pd.read_parquet(self.path, **options)
        frame, truncated = capped(frame, limits.max_rows)
        self._read_stamp = stamp
        return Fetched(frame, truncated)

    def cancel(self) -> None:
        pass

    def warning(self) -> str | None:
        return None

    def describe(self) -> str:
        return f"{self.format} file {self.path}"

    def close(self) -> None:
        pass
