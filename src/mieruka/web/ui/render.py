"""Helpers the templates use: times in the configured zone, sizes, results by shape."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ...core.job import JobRecord
from ...i18n import _


def local_time(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def utc_title(value: datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value is not None else ""


def human_size(size: int) -> str:
    amount = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# The line mieruka writes into a job's log before each attempt (recorder.py); the log keeps it in
# English (downloads, the CLI, the API), the page says it in the reader's language.
ATTEMPT_LINE = re.compile(r"--- attempt (\d+) of (\d+) ---")


def log_text(text: str, stream: str) -> str:
    """A log line as the page shows it: mieruka's own lines in the reader's language."""
    if stream == "system" and (found := ATTEMPT_LINE.fullmatch(text)):
        return _("--- attempt %(attempt)s of %(attempts)s ---", attempt=found[1], attempts=found[2])
    return text


# Japanese and Chinese put no space between words: a line break between two of their characters
# joins them with nothing.
_CJK = "\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_BREAK = re.compile(f"(?<=[{_CJK}])\\s*\\n\\s*(?=[{_CJK}])")


def summary(text: str | None) -> str:
    """A description's first paragraph on one line: what a card shows of it."""
    first = (text or "").strip().split("\n\n")[0]
    return " ".join(_CJK_BREAK.sub("", first).split())


def result_view(record: JobRecord) -> dict[str, Any]:
    """How to show a result: a table for a list of records, text for a string, else JSON."""
    value = record.result
    if value is None:
        return {"kind": "none"}
    if isinstance(value, str):
        return {"kind": "text", "text": value}
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        columns: list[str] = []
        for row in value:
            for key in row:
                if key not in columns:
                    columns.append(key)
        return {
            "kind": "table",
            "columns": columns,
            "rows": [[_cell(row.get(c)) for c in columns] for row in value[:1000]],
            "truncated": len(value) > 1000,
        }
    return {"kind": "json", "text": json.dumps(value, indent=2, ensure_ascii=False)}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml")
