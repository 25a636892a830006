"""Artifacts in an S3-compatible bucket (AWS S3, MinIO, Ceph, ...): objects `<prefix><job id>/<name>`.

The shared location when workers run on several machines: a worker uploads, any server streams the
object back. Credentials come from boto3's usual chain (environment, ~/.aws, instance role).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import ConfigError, MissingExtraError
from .local import check_name
from .uploads import S3Uploads


def _boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise MissingExtraError("S3 artifact storage", "s3") from None
    return boto3


class S3ArtifactStorage:
    page_size = 1000  # keys per list request; one delete request takes as many

    def __init__(self, url: str, endpoint_url: str = "", client: Any = None, work_root: Path | None = None) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigError(f"artifact storage {url!r}: use s3://bucket or s3://bucket/prefix")
        self.bucket = parsed.netloc
        prefix = parsed.path.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self._client = client or _boto3().client("s3", endpoint_url=endpoint_url or None)
        # Pipeline steps work in local folders of the machine that runs the job.
        self.work_root = work_root or Path(tempfile.gettempdir()) / "mieruka-work"
        from botocore.exceptions import ClientError

        self._client_error = ClientError

    def uploads(self, root: Path) -> S3Uploads:
        """Uploaded files in this bucket, beside the artifacts (see uploads.py)."""
        return S3Uploads(root, self._client, self.bucket, self.prefix)

    def _key(self, job_id: int, name: str) -> str:
        return f"{self.prefix}{int(job_id)}/{check_name(name)}"

    def save(self, job_id: int, name: str, data: bytes | Path) -> int:
        key = self._key(job_id, name)
        if isinstance(data, Path):
            self._client.upload_file(str(data), self.bucket, key)  # multipart for big files
            return data.stat().st_size
        self._client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return len(data)

    def open_chunks(self, job_id: int, name: str, chunk_size: int = 65536) -> Iterator[bytes]:
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self._key(job_id, name))["Body"]
        except self._client_error as exc:
            raise self._missing(exc, job_id, name) from None
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def size(self, job_id: int, name: str) -> int:
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self._key(job_id, name))
        except self._client_error as exc:
            raise self._missing(exc, job_id, name) from None
        return int(head["ContentLength"])

    def work_dir(self, job_id: int) -> Path:
        return self.work_root / str(int(job_id)) / ".work"

    def delete_job(self, job_id: int) -> None:
        shutil.rmtree(self.work_root / str(int(job_id)), ignore_errors=True)
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}{int(job_id)}/", PaginationConfig={"PageSize": self.page_size}
        )
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    def _missing(self, exc: Exception, job_id: int, name: str) -> Exception:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return FileNotFoundError(f"no artifact {name!r} of job {job_id} in s3://{self.bucket}/{self.prefix}")
        return exc
