"""Job stores: where job records, logs, artifacts' metadata, schedules and server liveness live."""

from .base import JobStore
from .sql import SqlJobStore

__all__ = ["JobStore", "SqlJobStore"]
