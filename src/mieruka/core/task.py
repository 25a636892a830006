"""A task: a plain function plus how to run it (timeout, retries, schedule, limits)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..durations import parse_duration
from ..errors import ConfigError, TaskNotFound
from ..i18n import Text, text
from ..notify.rules import Rule, task_rules
from .params import Signature
from .schedule import Schedule


@dataclass(frozen=True)
class Retention:
    """Keep finished jobs at most `max_age` seconds and/or the newest `max_count` of them."""

    max_age: float | None = None
    max_count: int | None = None


@dataclass
class Task:
    name: str
    func: Callable[..., Any]
    signature: Signature
    title: str
    timeout: float | None = None
    retries: int = 0
    retry_backoff: float = 1.0
    retry_backoff_max: float = 300.0
    priority: int = 0
    concurrency: int | None = None
    queue: str = "default"
    quick: bool = False
    schedule: Schedule | None = None
    retention: Retention | None = None
    tags: tuple[str, ...] = field(default=())
    # Role and user names that may see and run the task (None: everyone); see core/access.py.
    allow: tuple[str, ...] | None = None
    # Notification rules declared with the task (`notify=`), scoped to it; see notify/rules.py.
    notify: tuple[Rule, ...] = ()
    about: str = ""  # `description=`, given apart from the docstring (e.g. per language)

    @property
    def description(self) -> str:
        return self.about or self.signature.description

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt + 1` after `attempt` failed."""
        return float(min(self.retry_backoff * (2 ** max(attempt - 1, 0)), self.retry_backoff_max))

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "timeout": self.timeout,
            "retries": self.retries,
            "priority": self.priority,
            "concurrency": self.concurrency,
            "queue": self.queue,
            "quick": self.quick,
            "schedule": self.schedule.describe() if self.schedule else None,
            "accepts_files": bool(self.signature.file_fields),
            "file_fields": sorted(self.signature.file_fields),
            "tags": list(self.tags),
            "params_schema": self.signature.json_schema(),
        }


def make_task(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    title: Text | None = None,
    description: Text | None = None,
    help: Mapping[str, Text] | None = None,
    labels: Mapping[str, Text] | None = None,
    timeout: str | float | None = None,
    retries: int = 0,
    retry_backoff: str | float = 1.0,
    priority: int = 0,
    concurrency: int | None = None,
    queue: str = "default",
    quick: bool = False,
    every: str | float | None = None,
    cron: str | None = None,
    timezone: str = "UTC",
    keep: str | float | None = None,
    keep_count: int | None = None,
    tags: tuple[str, ...] = (),
    allow: list[str] | tuple[str, ...] | None = None,
    notify: Any = None,
) -> Task:
    task_name = name or func.__name__
    if not task_name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"task name {task_name!r} may hold only letters, digits, '_' and '-'")
    if retries < 0:
        raise ConfigError("retries must be >= 0")
    if concurrency is not None and concurrency < 1:
        raise ConfigError("concurrency must be >= 1")
    schedule = None
    if every is not None or cron is not None:
        schedule = Schedule(every=parse_duration(every), cron=cron, timezone=timezone)
    helps = {param: text(value, f"task {task_name!r}: help of {param!r}") for param, value in (help or {}).items()}
    named = {param: text(value, f"task {task_name!r}: label of {param!r}") for param, value in (labels or {}).items()}
    signature = Signature(func, task_name, helps, named)
    if schedule is not None:
        required = [n for n, f in signature.model.model_fields.items() if f.is_required()]
        if required:
            raise ConfigError(f"scheduled task {task_name!r} needs defaults for {', '.join(required)}")
    retention = None
    if keep_count is not None and keep_count < 0:
        raise ConfigError("keep_count must be >= 0")
    if keep is not None or keep_count is not None:
        retention = Retention(max_age=parse_duration(keep), max_count=keep_count)
    return Task(
        name=task_name,
        func=func,
        signature=signature,
        title=text(title, f"task {task_name!r}: title") or task_name.replace("_", " ").capitalize(),
        about=text(description, f"task {task_name!r}: description"),
        timeout=parse_duration(timeout),
        retries=retries,
        retry_backoff=parse_duration(retry_backoff) or 0.0,
        priority=priority,
        concurrency=concurrency,
        queue=queue,
        quick=quick,
        schedule=schedule,
        retention=retention,
        tags=tuple(tags),
        allow=tuple(allow) if allow is not None else None,
        notify=task_rules(notify, task_name),
    )


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def add(self, task: Task) -> None:
        if task.name in self._tasks:
            raise ConfigError(f"two tasks are named {task.name!r}")
        self._tasks[task.name] = task

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise TaskNotFound(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)
