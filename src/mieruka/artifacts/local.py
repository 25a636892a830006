"""Artifacts in a local directory: <home>/artifacts/<job id>/<name>."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import ValidationError


def check_name(name: str) -> str:
    """Artifact names are plain file names: no folders, no tricks."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or len(name) > 255:
        raise ValidationError(f"invalid artifact name {name!r}: use a plain file name")
    return name


class LocalArtifactStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, job_id: int) -> Path:
        return self.root / str(int(job_id))

    def path(self, job_id: int, name: str) -> Path:
        return self._dir(job_id) / check_name(name)

    def save(self, job_id: int, name: str, data: bytes | Path) -> int:
        target = self.path(job_id, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        if isinstance(data, Path):
            shutil.copyfile(data, tmp)
        else:
            tmp.write_bytes(data)
        os.replace(tmp, target)  # readers never see a half-written artifact
        return target.stat().st_size

    def open_chunks(self, job_id: int, name: str, chunk_size: int = 65536) -> Iterator[bytes]:
        with self.path(job_id, name).open("rb") as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    def size(self, job_id: int, name: str) -> int:
        return self.path(job_id, name).stat().st_size

    def work_dir(self, job_id: int) -> Path:
        # A dot name: never an artifact's (artifacts are listed from the store, not the folder).
        return self._dir(job_id) / ".work"

    def delete_job(self, job_id: int) -> None:
        shutil.rmtree(self._dir(job_id), ignore_errors=True)
