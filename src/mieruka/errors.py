"""The one exception tree of mieruka. Each error carries the HTTP status it maps to.

MierukaError                 500
 ├── ConfigError             500  bad settings or app definition
 ├── MissingExtraError       500  a feature needs `pip install mieruka[extra]`
 ├── NotFoundError           404
 │    ├── TaskNotFound
 │    ├── JobNotFound
 │    ├── ArtifactNotFound
 │    └── StepNotFound
 ├── PermissionDenied        403  the user's role or an allow list forbids it
 ├── TooManyAttempts         429  login throttled; retry later
 ├── ValidationError         422  bad parameters; `fields` names each bad field
 ├── ConflictError           409  the job is not in a state that allows the action
 ├── PayloadTooLarge         413
 ├── StorageUnavailable      503  the shared file storage (S3) does not answer
 ├── DatabaseUnavailable     503  the database does not answer (down, locked, unreadable); retry later
 ├── DirectoryUnavailable    503  the directory (LDAP) does not answer; local users still log in
 └── JobTimeoutError         504  a bounded wait ran out
"""

from __future__ import annotations

from typing import Any


class MierukaError(Exception):
    status_code = 500
    code = "error"
    retry_after: int | None = None  # seconds: answered as a Retry-After header

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
        self.feature, self.command = feature, f"pip install 'mieruka[{extra}]'"
        super().__init__(f"{feature} needs an optional dependency: {self.command}")


class NotFoundError(MierukaError):
    status_code = 404
    code = "not_found"


class TaskNotFound(NotFoundError):
    code = "task_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no task named {name!r}")
        self.name = name


class JobNotFound(NotFoundError):
    code = "job_not_found"

    def __init__(self, job_id: int | str) -> None:
        super().__init__(f"no job with id {job_id}")
        self.job_id = job_id


class ArtifactNotFound(NotFoundError):
    code = "artifact_not_found"


class PermissionDenied(MierukaError):
    status_code = 403
    code = "forbidden"


class TooManyAttempts(MierukaError):
    status_code = 429
    code = "too_many_attempts"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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


class DatabaseUnavailable(MierukaError):
    """The job store's database does not answer now; store/outage.py says which errors mean that."""

    status_code = 503
    code = "database_unavailable"

    def __init__(self, database: str, reason: str, retry_after: int = 5) -> None:
        super().__init__(f"the database ({database}) is unreachable: {reason}; retrying")
        self.database, self.reason, self.retry_after = database, reason, retry_after


class DirectoryUnavailable(MierukaError):
    """The directory (LDAP) cannot be reached, or refuses mieruka's service account: directory users
    cannot log in now (local users can). `reason` is for the log, not for the login page."""

    status_code = 503
    code = "directory_unavailable"

    def __init__(self, url: str, reason: str, retry_after: int = 30) -> None:
        super().__init__(f"the directory ({url}) cannot be reached")
        self.url, self.reason, self.retry_after = url, reason, retry_after


class JobTimeoutError(MierukaError):
    status_code = 504
    code = "wait_timeout"
