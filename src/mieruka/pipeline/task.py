"""A pipeline as a task: the function the task registry runs declares the steps, then runs them."""

from __future__ import annotations

import functools
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError
from .graph import Pipeline
from .run import PipelineRun


class Declaring(Protocol):
    """Where a pipeline is declared (an `App`): its folder, and how its steps' workers import it."""

    @property
    def folder(self) -> Path: ...

    def app_ref(self) -> str: ...


class PipelineTask:
    def __init__(self, app: Declaring, builder: Callable[..., Any], parallel: int | None) -> None:
        self.app = app
        self.builder = builder
        self.parallel = parallel or min(4, os.cpu_count() or 1)
        self.param = _pipeline_param(builder)

    def run(self, kwargs: dict[str, Any]) -> Any:
        context = kwargs.get(self.param)
        pipe = Pipeline(context, self.app.folder)
        kwargs[self.param] = pipe
        returned = self.builder(**kwargs)
        execution = PipelineRun(pipe, context, self.app.app_ref(), self.parallel)
        execution.run()
        return execution.result_of(returned)


def pipeline_function(app: Declaring, builder: Callable[..., Any], parallel: int | None) -> Callable[..., Any]:
    """The task function for a pipeline: same name, docstring and parameters as `builder`."""
    if parallel is not None and parallel < 1:
        raise ConfigError("parallel must be >= 1")
    task = PipelineTask(app, builder, parallel)

    @functools.wraps(builder)
    def run_pipeline(**kwargs: Any) -> Any:
        return task.run(kwargs)

    run_pipeline.mieruka_pipeline = task  # type: ignore[attr-defined]
    return run_pipeline


def _pipeline_param(builder: Callable[..., Any]) -> str:
    try:
        hints = typing.get_type_hints(builder)
    except Exception as exc:
        raise ConfigError(f"cannot read the type hints of pipeline {builder.__name__!r}: {exc}") from exc
    for name, hint in hints.items():
        if hint is Pipeline or Pipeline in typing.get_args(hint):
            return name
    raise ConfigError(
        f"pipeline {getattr(builder, '__name__', builder)!r} needs a parameter typed "
        "mieruka.Pipeline (e.g. `*, pipe: mieruka.Pipeline`) to declare its steps on"
    )
