"""Controls to put on a dashboard beside its charts: each runs a task when pressed and shows its answer.

>>> import mieruka
>>> from mieruka import charts, controls
>>> app = mieruka.App("Device panel")
>>> @app.task(quick=True)
... def set_relay(relay: int, on: bool) -> dict: return {"relay": relay, "on": on}
>>> @app.source(every="1s")
... def relays() -> list[dict]: return [{"relay1": 1}]
>>> app.dashboard("panel", [
...     charts.kpi(relays, value="relay1", title="Relay 1"),
...     controls.toggle(set_relay, param="on", params={"relay": 1}, state="relays.relay1", title="Relay 1 switch"),
... ])
Dashboard(name='panel', ...)

`task` is the decorated function or the task's name. Options common to every kind: `title`, `params`
(fixed parameters), `dangerous` (ask before running), `confirm` (the question; implies dangerous),
`span` (grid columns taken), `name` (the control's id in URLs; default from the title). Toggles,
sliders, numbers and selects set the task parameter `param` to the chosen value and show the
device's current value from `state="<source or stream>.<column or series>"`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .core.controls import Control


def _task(task: Any) -> tuple[str, Any]:
    """The task's name and, for a decorated function, the function (found among the app's tasks)."""
    if isinstance(task, str):
        return task, None
    name = getattr(task, "__name__", None)
    if not callable(task) or not isinstance(name, str):
        raise TypeError(f"cannot tell which task {task!r} is: pass the decorated function or its name")
    return name, task


def _make(kind: str, task: Any, params: Mapping[str, Any] | None, **options: Any) -> Control:
    name, func = _task(task)
    return Control(kind, name, params=params if params is not None else {}, func=func, **options)


def button(task: Any, *, params: Mapping[str, Any] | None = None, **options: Any) -> Control:
    """Runs the task with `params` when pressed."""
    return _make("button", task, params, **options)


def toggle(
    task: Any, *, param: str, params: Mapping[str, Any] | None = None, state: str | None = None, **options: Any
) -> Control:
    """A switch: runs the task with `param` true or false; shows `state` (truthy: on)."""
    return _make("toggle", task, params, param=param, state=state, **options)


def slider(
    task: Any,
    *,
    param: str,
    min: float | None = None,
    max: float | None = None,
    step: float | None = None,
    params: Mapping[str, Any] | None = None,
    state: str | None = None,
    **options: Any,
) -> Control:
    """A range from `min` to `max` in `step`s (default: the parameter's declared bounds); runs the
    task when released."""
    return _make("slider", task, params, param=param, min=min, max=max, step=step, state=state, **options)


def number(
    task: Any,
    *,
    param: str,
    min: float | None = None,
    max: float | None = None,
    step: float | None = None,
    params: Mapping[str, Any] | None = None,
    state: str | None = None,
    **options: Any,
) -> Control:
    """A number input with a Set button."""
    return _make("number", task, params, param=param, min=min, max=max, step=step, state=state, **options)


def select(
    task: Any,
    *,
    param: str,
    options: Iterable[Any] | None = None,
    params: Mapping[str, Any] | None = None,
    state: str | None = None,
    **more: Any,
) -> Control:
    """A choice among `options` (None: the parameter's Literal or Enum values); runs the task on change."""
    return _make(
        "select",
        task,
        params,
        param=param,
        options=tuple(options) if options is not None else None,
        state=state,
        **more,
    )


def form(task: Any, *, params: Mapping[str, Any] | None = None, **options: Any) -> Control:
    """A small inline form of the task's parameters not fixed in `params`, with a Run button."""
    return _make("form", task, params, **options)


__all__ = ["button", "form", "number", "select", "slider", "toggle"]
