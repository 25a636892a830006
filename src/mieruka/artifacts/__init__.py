"""Artifact storage: where the files jobs produce are kept."""

from .base import ArtifactStorage
from .local import LocalArtifactStorage

__all__ = ["ArtifactStorage", "LocalArtifactStorage"]
