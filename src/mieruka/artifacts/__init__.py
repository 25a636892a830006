"""Artifact storage: where the files jobs produce are kept."""

from __future__ import annotations

from pathlib import Path

from .base import ArtifactStorage
from .local import LocalArtifactStorage
from .uploads import LocalUploads, UploadStorage

__all__ = ["ArtifactStorage", "LocalArtifactStorage", "LocalUploads", "UploadStorage", "open_storage", "open_uploads"]


def open_storage(url: str, local_root: Path, endpoint_url: str = "") -> ArtifactStorage:
    """The storage named by the `artifact_storage` setting: "" (or "local") for a directory,
    s3://bucket/prefix for an S3-compatible bucket (`endpoint_url` for MinIO and the like)."""
    if url in ("", "local"):
        return LocalArtifactStorage(local_root)
    if url.startswith("s3://"):
        from .s3 import S3ArtifactStorage

        return S3ArtifactStorage(url, endpoint_url, work_root=local_root)
    from ..errors import ConfigError
    from ..i18n import _

    raise ConfigError(_("unknown artifact storage %(url)s: use 'local' or s3://bucket/prefix", url=repr(url)))


def open_uploads(storage: ArtifactStorage, root: Path) -> UploadStorage:
    """Where uploads go with this artifact storage: `root` alone, or also its S3 bucket so that
    workers on other machines can read them."""
    from .s3 import S3ArtifactStorage

    if isinstance(storage, S3ArtifactStorage):
        return storage.uploads(root)
    return LocalUploads(root)
