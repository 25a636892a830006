"""mieruka: put a web face on the Python work you already have."""

from ._version import __version__
from .app import App
from .core.job import ArtifactInfo, Job, JobRecord
from .core.params import File
from .core.status import JobStatus
from .errors import (
    ConfigError,
    ConflictError,
    JobNotFound,
    JobTimeoutError,
    MierukaError,
    MissingExtraError,
    NotFoundError,
    PayloadTooLarge,
    TaskNotFound,
    ValidationError,
)
from .pipeline import Pipeline
from .settings import Settings

__all__ = [
    "App",
    "ArtifactInfo",
    "ConfigError",
    "ConflictError",
    "File",
    "Job",
    "JobNotFound",
    "JobRecord",
    "JobStatus",
    "JobTimeoutError",
    "MierukaError",
    "MissingExtraError",
    "NotFoundError",
    "PayloadTooLarge",
    "Pipeline",
    "Settings",
    "TaskNotFound",
    "ValidationError",
    "__version__",
]
