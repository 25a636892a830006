"""Where uploaded files (task parameters of type File) are kept, so that whichever machine runs
the job can read them.

A server always writes an upload under its own `<home>/uploads/<upload id>/<file name>` first.
With local artifact storage that folder is the only copy (workers on the same machine, or sharing
the home, read it in place). With S3 the server also copies it to `<prefix>uploads/<upload id>/<file
name>` in the bucket when the job is submitted; a worker that does not have the file downloads it to
a temporary folder for the job and removes it afterwards. Deleting a job deletes both copies.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from ..core.params import FileRef
from ..errors import ValidationError
from .local import check_name


class UploadStorage(Protocol):
    root: Path  # this machine's folder of uploads: servers write here, local workers read here

    def keep(self, upload_id: str, filename: str, *, drop_local: bool = False) -> None:
        """Make an upload written under `root` readable by every worker (no-op when they share `root`);
        `drop_local`: no worker reads `root` (Celery), so remove this machine's copy once it is shared."""

    def exists(self, upload_id: str, filename: str) -> bool:
        """Whether the upload can be read, here or from the shared storage."""

    def fetch(self, upload_id: str, filename: str, target: Path) -> None:
        """Copy the upload to `target`; FileNotFoundError if it is nowhere."""

    def delete(self, upload_id: str) -> None:
        """Remove the upload everywhere."""


def check_upload_id(upload_id: str) -> str:
    """Ids and names come from job parameters: one that could leave the folder names no upload."""
    if not upload_id or upload_id in (".", "..") or any(c in upload_id for c in "/\\\x00") or len(upload_id) > 64:
        raise FileNotFoundError(f"invalid upload id {upload_id!r}")
    return upload_id


def _check_filename(filename: str) -> str:
    try:
        return check_name(filename)
    except ValidationError:
        raise FileNotFoundError(f"invalid upload file name {filename!r}") from None


class LocalUploads:
    """Uploads in one folder, read in place by the workers of this machine (or of a shared home)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, upload_id: str, filename: str) -> Path:
        return self.root / check_upload_id(upload_id) / _check_filename(filename)

    def keep(self, upload_id: str, filename: str, *, drop_local: bool = False) -> None:
        if not self.path(upload_id, filename).is_file():  # the only copy: always kept
            raise FileNotFoundError(f"no uploaded file {filename!r} with id {upload_id}")

    def exists(self, upload_id: str, filename: str) -> bool:
        try:
            return self.path(upload_id, filename).is_file()
        except FileNotFoundError:  # an invalid name names nothing
            return False

    def fetch(self, upload_id: str, filename: str, target: Path) -> None:
        source = self.path(upload_id, filename)
        if not source.is_file():
            raise FileNotFoundError(f"no uploaded file {filename!r} with id {upload_id}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)

    def delete(self, upload_id: str) -> None:
        try:
            shutil.rmtree(self.root / check_upload_id(upload_id), ignore_errors=True)
        except FileNotFoundError:
            pass  # an invalid id names nothing to delete


class S3Uploads(LocalUploads):
    """Uploads copied to an S3-compatible bucket, next to the artifacts, for workers on other machines."""

    def __init__(self, root: Path, client: Any, bucket: str, prefix: str) -> None:
        super().__init__(root)
        self._client = client
        self.bucket = bucket
        self.prefix = f"{prefix}uploads/"  # artifacts use "<prefix><job id>/": no clash
        from botocore.exceptions import ClientError

        self._client_error = ClientError

    def _key(self, upload_id: str, filename: str) -> str:
        return f"{self.prefix}{check_upload_id(upload_id)}/{_check_filename(filename)}"

    def _remote(self, upload_id: str, filename: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(upload_id, filename))
        except self._client_error as exc:
            if _missing(exc):
                return False
            raise
        return True

    def keep(self, upload_id: str, filename: str, *, drop_local: bool = False) -> None:
        local = self.path(upload_id, filename)
        if not local.is_file():
            if self._remote(upload_id, filename):
                return  # uploaded through another server
            raise FileNotFoundError(f"no uploaded file {filename!r} with id {upload_id}")
        if not self._remote(upload_id, filename):  # a rerun with the same file need not send it again
            self._client.upload_file(str(local), self.bucket, self._key(upload_id, filename))
        if drop_local:
            # Several servers: whichever deletes the job could not reach this machine's copy.
            shutil.rmtree(local.parent, ignore_errors=True)

    def exists(self, upload_id: str, filename: str) -> bool:
        try:
            return super().exists(upload_id, filename) or self._remote(upload_id, filename)
        except FileNotFoundError:
            return False

    def fetch(self, upload_id: str, filename: str, target: Path) -> None:
        if super().exists(upload_id, filename):
            super().fetch(upload_id, filename, target)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client.download_file(self.bucket, self._key(upload_id, filename), str(target))
        except self._client_error as exc:
            if _missing(exc):
                raise FileNotFoundError(
                    f"no uploaded file {filename!r} with id {upload_id} in s3://{self.bucket}/{self.prefix}"
                ) from None
            raise

    def delete(self, upload_id: str) -> None:
        super().delete(upload_id)
        try:
            prefix = f"{self.prefix}{check_upload_id(upload_id)}/"
        except FileNotFoundError:
            return
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})


def _missing(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


def file_refs(params: dict[str, Any]) -> list[tuple[str, str]]:
    """(upload id, file name) of every uploaded file among a job's parameters."""
    found: list[tuple[str, str]] = []
    for value in params.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and set(item) == set(FileRef.model_fields):
                found.append((str(item["upload_id"]), str(item["filename"])))
    return found


@contextmanager
def job_upload_root(uploads: UploadStorage, params: dict[str, Any]) -> Iterator[Path]:
    """A folder where the job's uploads can be read: this machine's own when it has them all,
    otherwise a temporary one they are downloaded to, removed when the job is done."""
    refs = file_refs(params)
    if all(_local(uploads, upload_id, filename) for upload_id, filename in refs):
        yield uploads.root
        return
    scratch = Path(tempfile.mkdtemp(prefix="mieruka-uploads-"))
    try:
        for upload_id, filename in refs:
            uploads.fetch(upload_id, filename, scratch / check_upload_id(upload_id) / _check_filename(filename))
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _local(uploads: UploadStorage, upload_id: str, filename: str) -> bool:
    try:
        return (uploads.root / check_upload_id(upload_id) / _check_filename(filename)).is_file()
    except FileNotFoundError:  # an invalid name: fetch will say so
        return False
