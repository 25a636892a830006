"""Executors: how jobs reach a worker and how the engine hears back."""

from .base import Died, Executor, Finished, Recorded, RemoteExecutor, WorkerMessage
from .local import LocalExecutor

__all__ = ["Died", "Executor", "Finished", "LocalExecutor", "Recorded", "RemoteExecutor", "WorkerMessage"]
