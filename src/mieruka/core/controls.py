"""Declarations of a dashboard's controls: buttons, toggles, sliders, numbers, selects and small forms
bound to a task, and where each reads the device's current state. Nothing about drawing or running.

A control runs its task with fixed `params` plus, for a toggle, slider, number or select, the
value the user chose as `param` (a form: the task's other parameters, filled in). `state` names a
source's column or a stream's series ("relays.relay1"): the control shows its latest value.
"""

from __future__ import annotations

import enum
import math
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Union, get_args, get_origin

from ..errors import ConfigError, ValidationError
from ..i18n import N_, _, localized
from .task import Task, TaskRegistry

KINDS = ("button", "toggle", "slider", "number", "select", "form")
VALUED = ("toggle", "slider", "number", "select")  # the user chooses the value of `param`
# Whole sentences per kind, so that each language words its own subject.
TAKES_NO_PARAMS = {
    "button": N_("a button takes no params (only a form does)"),
    "toggle": N_("a toggle takes no params (only a form does)"),
    "slider": N_("a slider takes no params (only a form does)"),
    "number": N_("a number control takes no params (only a form does)"),
    "select": N_("a select takes no params (only a form does)"),
}
NEEDS_A_VALUE = {
    "toggle": N_("a toggle needs a value"),
    "slider": N_("a slider needs a value"),
    "number": N_("a number control needs a value"),
    "select": N_("a select needs a value"),
}
TAKES_A_NUMBER = {"slider": N_("a slider takes a number"), "number": N_("a number control takes a number")}


@dataclass(frozen=True)
class Control:
    """One control of a dashboard, bound to the task named `task` (see `mieruka.controls`).

    `state` is "<source or stream>.<column or series>": the source's name ends at the first dot.
    A slider needs `min` and `max` (taken from the parameter's bounds when it declares them); a
    select offers `options` (None: the parameter's Literal or Enum choices). `confirm` is the
    question asked before a `dangerous` control runs (it implies dangerous)."""

    kind: str
    task: str
    title: str = ""
    param: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    state: str | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    options: tuple[Any, ...] | None = None
    dangerous: bool = False
    confirm: str | None = None
    span: int = 1
    name: str = ""
    # Set when the control is bound to its app's task (`bind`): the parameters a form asks for,
    # and whether `state` names a stream rather than a source.
    fields: tuple[str, ...] = ()
    stream_state: bool = False
    func: Callable[..., Any] | None = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown control kind {self.kind!r}; one of {', '.join(KINDS)}")
        if not isinstance(self.params, Mapping) or not all(isinstance(k, str) for k in self.params):
            raise ConfigError("params= must be a dict of parameter names to values")
        object.__setattr__(self, "params", dict(self.params))
        if self.kind in VALUED and not self.param:
            raise ConfigError(f"a {self.kind} needs param= (the task parameter it sets)")
        if self.kind not in VALUED and self.param:
            raise ConfigError(f"a {self.kind} sets no single parameter: leave out param=")
        if self.param and self.param in self.params:
            raise ConfigError(f"parameter {self.param!r} is both the control's value and fixed in params=")
        for bound in (self.min, self.max, self.step):
            if bound is not None and (isinstance(bound, bool) or not math.isfinite(bound)):
                raise ConfigError("min, max and step must be finite numbers")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ConfigError(f"min ({self.min}) must be below max ({self.max})")
        if self.step is not None and self.step <= 0:
            raise ConfigError("step must be > 0")
        if self.state is not None:
            source, dot, column = self.state.partition(".")
            if not (source and dot and column):
                raise ConfigError(f"state={self.state!r}: write '<source or stream>.<column>', e.g. 'relays.relay1'")
            if self.kind in ("button", "form"):
                raise ConfigError(f"a {self.kind} shows no state: state= is for toggles, sliders, numbers and selects")
        if self.options is not None:
            if self.kind != "select":
                raise ConfigError("options= is for a select")
            if not self.options:
                raise ConfigError("a select needs at least one option")
        if self.confirm is not None:
            if not self.confirm.strip():
                raise ConfigError("confirm= is the question to ask: it cannot be empty")
            object.__setattr__(self, "dangerous", True)
        if self.span < 1:
            raise ConfigError("span must be >= 1")

    @property
    def source(self) -> str:
        """The source or stream the state is read from ("" without state)."""
        return self.state.partition(".")[0] if self.state else ""

    @property
    def column(self) -> str:
        """The column (of a source) or series (of a stream) holding the state."""
        return self.state.partition(".")[2] if self.state else ""

    @property
    def is_stream(self) -> bool:
        return self.stream_state

    @property
    def key(self) -> str:
        """The control's state tile among the dashboard's tiles (charts are named apart)."""
        return f"control:{self.name}"

    @property
    def question(self) -> str:
        """What to ask before a dangerous control runs."""
        return self.confirm or _("Run “%(title)s” now?", title=localized(self.title) or self.task)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "title": self.title,
            "param": self.param,
            "params": dict(self.params),
            "fields": list(self.fields),
            "state": self.state,
            "min": self.min,
            "max": self.max,
            "step": self.step,
            "options": list(self.options) if self.options is not None else None,
            "dangerous": self.dangerous,
            "confirm": self.question if self.dangerous else None,
            "span": self.span,
        }

    # -- pressing ------------------------------------------------------------------------------
    def parameters(self, value: Any = None, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The task's parameters for one press: the fixed ones, plus the checked `value` of a toggle,
        slider, number or select, or the `given` fields of a form. ValidationError (422) names what
        is wrong; the task's own validation follows."""
        given = dict(given or {})
        if self.kind == "form":
            if value is not None:
                raise _invalid("value", _("a form takes its fields as params, not a value"))
            unknown = sorted(set(given) - set(self.fields))
            if unknown:
                names = ", ".join(map(repr, unknown))
                if all(n in self.params for n in unknown):
                    raise _invalid(unknown[0], _("%(names)s: fixed by the control", names=names))
                raise _invalid(unknown[0], _("%(names)s: not a field of this form", names=names))
            return {**given, **self.params}
        if given:
            raise _invalid("params", _(TAKES_NO_PARAMS[self.kind]))
        if self.kind == "button":
            if value is not None:
                raise _invalid("value", _("a button takes no value"))
            return dict(self.params)
        assert self.param is not None
        return {**self.params, self.param: self.checked(value)}

    def checked(self, value: Any) -> Any:
        """The value a user chose, checked against the control's kind and bounds."""
        if value is None:
            raise _invalid("value", _(NEEDS_A_VALUE[self.kind]))
        if self.kind == "toggle":
            if not isinstance(value, bool):
                raise _invalid("value", _("a toggle takes true or false"))
            return value
        if self.kind == "select":
            choices = self.options or ()
            for option in choices:
                if value == option or (isinstance(option, str) and str(value) == option):
                    return option
            choices_text = ", ".join(map(repr, choices))
            raise _invalid("value", _("%(value)s is not one of %(choices)s", value=repr(value), choices=choices_text))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _invalid("value", _(TAKES_A_NUMBER[self.kind]))
        if self.min is not None and value < self.min:
            raise _invalid("value", _("%(value)s is below the minimum %(min)s", value=value, min=_number(self.min)))
        if self.max is not None and value > self.max:
            raise _invalid("value", _("%(value)s is above the maximum %(max)s", value=value, max=_number(self.max)))
        if self.step is not None:
            steps = (value - (self.min or 0)) / self.step
            if abs(steps - round(steps)) > 1e-9 * max(1.0, abs(steps)):
                step = _number(self.step)
                raise _invalid("value", _("%(value)s is not a multiple of the step %(step)s", value=value, step=step))
        return value


def _invalid(name: str, message: str) -> ValidationError:
    return ValidationError(f"{name}: {message}", [{"field": name, "message": message}])


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# -- binding to the app's tasks ------------------------------------------------------------------
def bind(control: Control, tasks: TaskRegistry, streams: Mapping[str, Any]) -> Control:
    """The control checked against its task (declared before the dashboard) and completed: the
    task's declared name, a title, a form's fields, a select's choices, a slider's bounds, and
    whether its state names a stream (in `streams`) or a source."""
    task = _find(control, tasks)
    fields = task.signature.model.model_fields
    where = f"control {control.title or control.kind!r} (task {task.name!r})"
    chosen = [control.param] if control.param else []
    given = {*control.params, *chosen}
    unknown = [name for name in (*control.params, *chosen) if name not in fields]
    if unknown:
        raise ConfigError(f"{where}: the task has no parameter {', '.join(map(repr, unknown))}")
    files = task.signature.file_fields
    if files & {*(k for k, v in control.params.items() if v is not None), *chosen}:
        raise ConfigError(f"{where}: a control cannot send files")
    changes: dict[str, Any] = {"task": task.name, "title": control.title or task.title}
    if control.kind == "form":
        form_fields = tuple(name for name in fields if name not in given)
        if files & set(form_fields):
            raise ConfigError(
                f"{where}: a form control cannot upload files; fix them in params= or use the task's page"
            )
        changes["fields"] = form_fields
    else:
        missing = [name for name, info in fields.items() if info.is_required() and name not in given]
        if missing:
            raise ConfigError(
                f"{where}: nothing gives the required parameter {', '.join(map(repr, missing))}: "
                "fix it in params= or use controls.form"
            )
    if control.param is not None:
        info = fields[control.param]
        if control.kind == "select" and control.options is None:
            choices = choices_of(info.annotation)
            if not choices:
                raise ConfigError(
                    f"{where}: parameter {control.param!r} has no Literal or Enum choices: give options=[...]"
                )
            changes["options"] = choices
        if control.kind in ("slider", "number"):
            schema = task.signature.json_schema().get("properties", {}).get(control.param, {})
            for key, bound in (("min", "minimum"), ("max", "maximum")):
                if getattr(control, key) is None and isinstance(schema.get(bound), (int, float)):
                    changes[key] = float(schema[bound])
    if control.kind == "slider" and (
        changes.get("min", control.min) is None or changes.get("max", control.max) is None
    ):
        raise ConfigError(f"{where}: a slider needs min= and max=")
    changes["stream_state"] = bool(control.state) and control.source in streams
    return replace(control, **changes)


def choices_of(annotation: Any) -> tuple[Any, ...]:
    """The values a Literal or Enum annotation (optionally Optional) allows, else ()."""
    origin = get_origin(annotation)
    if origin is Literal:
        return tuple(get_args(annotation))
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            if arg is not type(None):
                found = choices_of(arg)
                if found:
                    return found
        return ()
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return tuple(member.value for member in annotation)
    return ()


def _find(control: Control, tasks: TaskRegistry) -> Task:
    if control.func is not None:
        for task in tasks:
            if task.func is control.func:
                return task
    if control.task in tasks:
        return tasks.get(control.task)
    raise ConfigError(
        f"control {control.title or control.kind!r}: no task named {control.task!r} "
        "(declare the task before the dashboard that holds its controls)"
    )
