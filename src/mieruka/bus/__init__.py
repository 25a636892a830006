"""Event buses: how job events reach every subscriber (SSE streams, waiters). `redis.RedisBus`
shares them between server processes (extra `mieruka[redis]`)."""

from .base import EventBus, Unsubscribe
from .memory import MemoryBus

__all__ = ["EventBus", "MemoryBus", "Unsubscribe"]
