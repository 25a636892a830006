"""The artifact storage interface."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class ArtifactStorage(Protocol):
    def save(self, job_id: int, name: str, data: bytes | Path) -> int:
        """Store bytes or copy a file as artifact `name` of the job; returns its size."""

    def open_chunks(self, job_id: int, name: str, chunk_size: int = 65536) -> Iterator[bytes]:
        """The artifact's content in chunks; FileNotFoundError if missing."""

    def size(self, job_id: int, name: str) -> int:
        """Size in bytes; FileNotFoundError if missing."""

    def delete_job(self, job_id: int) -> None:
        """Remove every artifact of the job (and its work folder)."""

    def work_dir(self, job_id: int) -> Path:
        """A local folder for the job's working files (pipeline steps), removed with its artifacts."""
