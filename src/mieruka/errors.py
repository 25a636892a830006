"""The one exception tree of mieruka. Each error carries the HTTP status it maps to.

    MierukaError                 500
     ├── ConfigError             500  bad settings or app definition
     ├── MissingExtraError       500  a feature needs `pip install mieruka[extra]`
     ├── NotFoundError           404
     │    ├── TaskNotFound
     │    ├── JobNotFound
     │    ├── ArtifactNotFound
     │    └── StepNotFound
     ├── ValidationError         422  bad parameters; `fields` names each bad field
     ├── ConflictError           409  the job is not in a state that allows the action
     ├── PayloadTooLarge         413
     ├── StorageUnavailable      503  the shared file storage (S3) does not answer
     └── JobTimeoutError         504  a bounded wait ran out
"""

from __future__ import annotations

from typing import Any


class MierukaError(Exception):
    status_code = 500
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class ConfigError(MierukaError):
    code = "config_error"


class MissingExtraError(MierukaError):
    code = "missing_extra"

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f"{feature} needs an optional dependency: pip install 'mieruka[{extra}]'")


class NotFoundError(MierukaError):
    status_code = 404
    code = "not_found"


class TaskNotFound(NotFoundError):
    code = "task_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no task named {name!r}")


class JobNotFound(NotFoundError):
    code = "job_not_found"

    def __init__(self, job_id: int | str) -> None:
        super().__init__(f"no job with id {job_id}")


class ArtifactNotFound(NotFoundError):
    code = "artifact_not_found"


class StepNotFound(NotFoundError):
    code = "step_not_found"


class ValidationError(MierukaError):
    status_code = 422
    code = "validation_error"

    def __init__(self, message: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or []

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "fields": self.fields}


class ConflictError(MierukaError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(MierukaError):
    status_code = 413
    code = "payload_too_large"


class StorageUnavailable(MierukaError):
    status_code = 503
    code = "storage_unavailable"


class JobTimeoutError(MierukaError):
    status_code = 504
    code = "wait_timeout"
