"""Event buses: how job events reach every subscriber (SSE streams, waiters)."""

from .base import EventBus, Unsubscribe
from .memory import MemoryBus

__all__ = ["EventBus", "MemoryBus", "Unsubscribe"]
