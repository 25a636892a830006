"""mieruka: put a web face on the Python work you already have."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
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

# The public names, each imported from its module at first use: a CLI command or a worker that
# needs none of them does not pay for the App (pydantic and the task machinery) at start-up.
_HOMES = {
    "App": ".app",
    "ArtifactInfo": ".core.job",
    "Job": ".core.job",
    "JobRecord": ".core.job",
    "File": ".core.params",
    "JobStatus": ".core.status",
    "ConfigError": ".errors",
    "ConflictError": ".errors",
    "JobNotFound": ".errors",
    "JobTimeoutError": ".errors",
    "MierukaError": ".errors",
    "MissingExtraError": ".errors",
    "NotFoundError": ".errors",
    "PayloadTooLarge": ".errors",
    "TaskNotFound": ".errors",
    "ValidationError": ".errors",
    "Pipeline": ".pipeline",
    "Settings": ".settings",
}


if not TYPE_CHECKING:  # mypy sees the imports above, and still flags a name that is not public

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'mieruka' has no attribute {name!r}")
        value = getattr(import_module(home, __name__), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_HOMES))


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
