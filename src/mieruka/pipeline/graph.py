"""Declaring a pipeline: the `Pipeline` a pipeline task receives, its steps, and references to the
outputs of earlier steps (which is how dependencies are found)."""

from __future__ import annotations

import hashlib
import re
import shlex
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from ..core.job import Job
from ..core.params import File
from ..errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-\[\]=,]{0,199}$")


@dataclass(frozen=True)
class Ref:
    """A value that exists once step `step` has run: its output (or an item of it), a file in its
    folder, or the folder itself."""

    step: str
    kind: str = "value"  # value, file, dir
    path: tuple[str | int, ...] = ()
    filename: str = ""

    def __getitem__(self, key: str | int) -> Ref:
        if self.kind != "value":
            raise TypeError("only a step's output value can be indexed")
        return Ref(self.step, "value", (*self.path, key))

    def __repr__(self) -> str:
        if self.kind == "file":
            return f"<{self.step}:{self.filename}>"
        if self.kind == "dir":
            return f"<{self.step}/>"
        return f"<{self.step}{''.join(f'[{p!r}]' for p in self.path)}>"


class Output(Ref):
    """What `pipeline.step()` and `pipeline.shell()` return: stands for the step's result.

    Pass it (or `out["key"]`, `out.file("name")`, `out.dir`) to a later step: that step then
    depends on this one and receives the real value, a `Path` to the file, or the folder."""

    def file(self, name: str) -> Ref:
        """A file the step wrote in its folder (its working directory)."""
        if not name or name.startswith("/") or ".." in Path(name).parts:
            raise ConfigError(f"step {self.step!r}: file {name!r} must be a relative path inside its folder")
        return Ref(self.step, "file", (), name)

    @property
    def dir(self) -> Ref:
        return Ref(self.step, "dir")


@dataclass
class StepDef:
    name: str
    kind: str  # python, shell, snakemake
    position: int
    func: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    command: str | Sequence[Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    allow_failure: bool = False
    timeout: float | None = None
    snakemake: dict[str, Any] = field(default_factory=dict)

    @property
    def depends_on(self) -> list[str]:
        found: list[str] = []
        for ref in _refs((self.args, self.kwargs, self.command, self.params, self.snakemake)):
            if ref.step not in found:
                found.append(ref.step)
        for name in self.after:
            if name not in found:
                found.append(name)
        return found

    @property
    def description(self) -> str:
        if self.kind == "python" and self.func is not None:
            return f"{getattr(self.func, '__qualname__', repr(self.func))}{_call_repr(self.args, self.kwargs)}"
        if self.kind == "shell":
            if isinstance(self.command, str):
                return self.command if not self.params else f"{self.command}  {_params_repr(self.params)}"
            return " ".join(shlex.quote(str(a)) if not isinstance(a, Ref) else repr(a) for a in self.command or ())
        if self.kind == "snakemake":
            return f"snakemake {self.snakemake.get('snakefile')} {' '.join(self.snakemake.get('targets', ()))}"
        return self.kind

    @property
    def fingerprint(self) -> str:
        """Changes when the step's definition changes: a retry reuses a step only if it has not."""
        text = "\x00".join(
            [self.kind, self.description, repr(sorted(self.env.items())), repr(self.snakemake), repr(self.depends_on)]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:32]


class Pipeline:
    """What a pipeline task receives (declare a parameter typed `mieruka.Pipeline`): add steps to it.

    >>> @app.pipeline(parallel=2)
    ... def analyse(reads: mieruka.File, *, pipe: mieruka.Pipeline) -> None:
    ...     checked = pipe.step(validate, reads)                         # a Python step
    ...     sorted_ = pipe.shell("sort {src} > sorted.txt", src=checked.file("clean.txt"))
    ...     pipe.step(report, sorted_.file("sorted.txt"), name="report")

    Each step runs in its own process with its own folder as working directory; steps whose
    inputs are ready run in parallel. The function only declares steps: it must not depend on
    their results (it runs again in each step's process to find the step's function)."""

    __mieruka_job_handle__ = True

    def __init__(self, job: Job | None = None, folder: Path | None = None) -> None:
        self.job = job
        self.steps: dict[str, StepDef] = {}
        # Relative paths given to steps (a Snakefile, its workdir) are the app's: they resolve
        # against the app file's folder, whatever the current directory of the process.
        self.folder = folder

    # -- the job handle, for the declaring function itself ------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        return self.job.params if self.job is not None else {}

    def log(self, message: str) -> None:
        print(message, flush=True)

    # -- declaring steps -----------------------------------------------------------------------
    def step(
        self,
        func: Callable[..., Any],
        /,
        *args: Any,
        name: str | None = None,
        after: Sequence[str | Ref] = (),
        allow_failure: bool = False,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Output:
        """A Python step: `func(*args, **kwargs)` in a process of its own. Outputs of earlier
        steps among the arguments are replaced by their values; the return value (JSON) is this
        step's output. A parameter typed `mieruka.Job` gets a handle for progress and artifacts."""
        if not callable(func):
            raise ConfigError(f"pipeline.step() needs a function, got {func!r}")
        label = str(name or getattr(func, "__name__", None) or "step")
        return self._add(
            StepDef(
                self._unique(label),
                "python",
                len(self.steps),
                func=func,
                args=args,
                kwargs=kwargs,
                after=_after(after),
                allow_failure=allow_failure,
                timeout=timeout,
            )
        )

    def shell(
        self,
        command: str | Sequence[str | PathLike[str] | Ref | File],
        /,
        *,
        name: str | None = None,
        after: Sequence[str | Ref] = (),
        allow_failure: bool = False,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        **params: Any,
    ) -> Output:
        """A shell step. `command` is an argv list (run without a shell; items may be outputs of
        earlier steps), or a shell string whose `{name}` fields are filled from `params`, each
        value quoted with shlex.quote (a list becomes several quoted words). Its stdout and
        stderr stream into the step's log; a line `::progress 0.4 aligning` reports progress."""
        if isinstance(command, str):
            fields = {f for _, f, _, _ in string.Formatter().parse(command) if f is not None}
            for item in fields:
                if item not in params:
                    raise ConfigError(f"shell step: the command uses {{{item}}} but no {item}= was given")
            label = name or (command.split() or ["shell"])[0]
        else:
            command = list(command)
            if not command:
                raise ConfigError("shell step: the command is empty")
            if params:
                raise ConfigError(
                    "shell step: parameters fill {fields} of a command string; put values straight into an argv list"
                )
            first = command[0]
            label = name or (Path(str(first)).name if not isinstance(first, Ref) else "shell")
        return self._add(
            StepDef(
                self._unique(label),
                "shell",
                len(self.steps),
                command=command,
                params=params,
                env=dict(env or {}),
                after=_after(after),
                allow_failure=allow_failure,
                timeout=timeout,
            )
        )

    def snakemake(
        self,
        snakefile: str | PathLike[str],
        /,
        *,
        targets: Sequence[str] = (),
        config: Mapping[str, Any] | None = None,
        cores: int = 1,
        workdir: str | PathLike[str] | Ref | None = None,
        isolate: bool = True,
        name: str = "snakemake",
        after: Sequence[str | Ref] = (),
        allow_failure: bool = False,
        timeout: float | None = None,
        extra_args: Sequence[str] = (),
    ) -> Output:
        """Run an existing Snakefile, unchanged, as `snakemake` would in `workdir` (default: the
        Snakefile's folder; or an earlier step's `out.dir`): its `configfile:` and relative inputs
        are found there. With `isolate` (the default) each job writes into a folder of its own
        that mirrors `workdir`, so jobs never share outputs. `config` overrides the Snakefile's
        config keys. Each rule execution shows as a step (the rule and its wildcards) with live
        state and log. Relative paths are the app file's folder's."""
        if cores < 1:
            raise ConfigError("snakemake: cores must be >= 1")
        path = self._path(snakefile)
        if not path.is_file():
            raise ConfigError(f"snakemake: no Snakefile at {str(path)!r}")
        where = workdir if isinstance(workdir, Ref) or workdir is None else str(self._path(workdir))
        spec = {
            "snakefile": str(path),
            "targets": [str(t) for t in targets],
            "config": dict(config or {}),
            "cores": int(cores),
            "workdir": where,
            "extra_args": [str(a) for a in extra_args],
        }
        if not isolate:
            spec["isolate"] = False  # absent when True: an unchanged step keeps its fingerprint
        return self._add(
            StepDef(
                self._unique(name),
                "snakemake",
                len(self.steps),
                snakemake=spec,
                after=_after(after),
                allow_failure=allow_failure,
                timeout=timeout,
            )
        )

    # -- internals -----------------------------------------------------------------------------
    def _path(self, value: str | PathLike[str]) -> Path:
        path = Path(value).expanduser()
        if not path.is_absolute() and self.folder is not None:
            path = self.folder / path
        return path.resolve()

    def _unique(self, label: str) -> str:
        label = re.sub(r"[^A-Za-z0-9_.\-]", "_", label)[:180] or "step"
        name, n = label, 1
        while name in self.steps:
            n += 1
            name = f"{label}-{n}"
        return name

    def _add(self, step: StepDef) -> Output:
        if step.name in self.steps:
            raise ConfigError(f"two steps are named {step.name!r}")
        if not _NAME.match(step.name):
            raise ConfigError(f"step name {step.name!r} may hold only letters, digits and _ . -")
        for dep in step.depends_on:
            if dep not in self.steps:
                raise ConfigError(f"step {step.name!r} depends on {dep!r}, which is not a step declared before it")
        self.steps[step.name] = step
        return Output(step.name)


def _after(items: Sequence[str | Ref]) -> tuple[str, ...]:
    return tuple(item.step if isinstance(item, Ref) else str(item) for item in items)


def _refs(value: Any) -> list[Ref]:
    if isinstance(value, Ref):
        return [value]
    if isinstance(value, Mapping):
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list | tuple | set | frozenset):
        return [r for v in value for r in _refs(v)]
    return []


def _call_repr(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()]
    return f"({', '.join(parts)})"


def _params_repr(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_short(v)}" for k, v in params.items())


def _short(value: Any) -> str:
    if isinstance(value, File):
        return f"File({value.filename!r})"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    text = repr(value)
    # Default reprs carry a memory address, which would change the fingerprint at every attempt.
    return re.sub(r" at 0x[0-9a-f]+", "", text)[:200]
