"""Filling in references to earlier steps' outputs, and shell command strings, safely."""

from __future__ import annotations

import shlex
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..core.params import File
from ..errors import ConfigError
from .graph import Ref


def resolve(value: Any, outputs: Mapping[str, Any], step_dir: Callable[[str], Path]) -> Any:
    """`value` with every Ref replaced: the output value (or an item of it), or a Path."""
    if isinstance(value, Ref):
        if value.kind == "dir":
            return step_dir(value.step)
        if value.kind == "file":
            return step_dir(value.step) / value.filename
        result = outputs.get(value.step)
        for key in value.path:
            try:
                result = result[key]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                raise ConfigError(f"the output of step {value.step!r} has no item {key!r}") from None
        return result
    if isinstance(value, list):
        return [resolve(v, outputs, step_dir) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v, outputs, step_dir) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v, outputs, step_dir) for k, v in value.items()}
    return value


def shell_word(value: Any) -> str:
    """One value as shell text: quoted so the shell sees exactly it (lists: several words)."""
    if isinstance(value, list | tuple):
        return " ".join(shell_word(v) for v in value)
    if isinstance(value, File):
        return shlex.quote(str(value.path))
    if isinstance(value, bool):
        return shlex.quote(str(value).lower())
    return shlex.quote(str(value))


def argv_word(value: Any) -> str:
    """One item of an argv list as text: a file parameter is its path."""
    if isinstance(value, File):
        return str(value.path)
    return str(value)


def render_shell(
    command: str, params: Mapping[str, Any], outputs: Mapping[str, Any], step_dir: Callable[[str], Path]
) -> str:
    """The command with each `{name}` replaced by its quoted value; `{{` and `}}` are braces.
    Format specs and conversions are refused: they would bypass the quoting."""
    parts: list[str] = []
    for literal, field, spec, conversion in string.Formatter().parse(command):
        parts.append(literal)
        if field is None:
            continue
        if spec or conversion or not field.isidentifier():
            raise ConfigError(f"shell step: use plain {{name}} fields, not {{{field}...}}")
        parts.append(shell_word(resolve(params[field], outputs, step_dir)))
    return "".join(parts)
