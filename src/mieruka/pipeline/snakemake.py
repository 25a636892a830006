"""Snakemake workflows as pipeline steps, with every rule execution visible as a step of its own.

The workflow runs unchanged, through Snakemake's own command line, in a child process
(`python -m mieruka.pipeline.snakemake`). That process registers a Snakemake logger plugin
(snakemake-interface-logger-plugins) which writes each job event (JOB_INFO, JOB_FINISHED,
JOB_ERROR) and Snakemake's own messages as JSON lines on a pipe; pipeline/rules.py turns them
into rule steps.

A workflow sees the files of its folder (by default the Snakefile's) as Snakemake would there,
but writes into a folder of its own per job: the step's folder mirrors the workflow folder
(real folders, a symbolic link per file), and Snakemake runs in it with `--directory`."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import types
from collections.abc import Callable
from logging import ERROR, LogRecord
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from ..errors import ConfigError, MissingExtraError
from .graph import Pipeline, Ref, StepDef
from .tagging import SYNC, install, write_line

MAX_MIRRORED = 100_000
# Not mirrored: Snakemake's own state (per job), version control, and mieruka's default home.
SKIPPED = frozenset({".snakemake", ".git", ".mieruka"})


def workflow_folders(step: StepDef, folder: Path, resolve: Callable[[Any], Any]) -> tuple[Path, Path]:
    """(the folder the workflow reads, the folder Snakemake runs in)."""
    spec = step.snakemake
    workdir = spec.get("workdir")
    if isinstance(workdir, Ref):
        workdir = resolve(workdir)
    source = Path(str(workdir)) if workdir else Path(spec["snakefile"]).parent
    return source, (folder if spec.get("isolate", True) else source)


def snakemake_argv(step: StepDef, folder: Path, control: Path, resolve: Callable[[Any], Any], avoid: Path) -> list[str]:
    """The command line of the step; `avoid` (the folder of every job's files) is never mirrored."""
    if importlib.util.find_spec("snakemake") is None:
        raise MissingExtraError("Snakemake workflows", "snakemake")
    spec = step.snakemake
    source, directory = workflow_folders(step, folder, resolve)
    if not source.is_dir():
        raise ConfigError(f"snakemake: the workflow folder {str(source)!r} does not exist")
    if directory != source:
        mirror(source, directory, avoid)
    # Options taking several values (--logger, --configfile) must be followed by a flag, or they
    # would swallow the targets; the targets come before extra_args, which may end in such options.
    args = [
        "--logger",
        "mieruka",
        "--snakefile",
        spec["snakefile"],
        "--cores",
        str(spec["cores"]),
        "--directory",
        str(directory),
    ]
    config = resolve(spec["config"])
    if config:
        # Only a config given here overrides the Snakefile's own `configfile:` (and only its keys).
        config_file = control / f"{step.name}.config.json"
        config_file.write_text(json.dumps(config, default=str))
        args += ["--configfile", str(config_file)]
    args += ["--rerun-incomplete", "--printshellcmds", "--nocolor"]
    targets = [str(t) for t in spec["targets"]]
    return [sys.executable, "-m", "mieruka.pipeline.snakemake", *args, *targets, *spec["extra_args"]]


def mirror(source: Path, target: Path, avoid: Path | None = None) -> None:
    """Make `target` show `source`'s files: its folders as real folders (so what the workflow
    writes stays in `target`), each file as a symbolic link. Files already in `target` (outputs of
    an earlier attempt) are kept."""
    source = source.resolve()
    target.mkdir(parents=True, exist_ok=True)
    skip = {target.resolve(), *([avoid.resolve()] if avoid is not None else [])}
    count = 0
    for here, dirs, files in os.walk(source):
        base = Path(here)
        rel = base.relative_to(source)
        keep = []
        for d in dirs:
            path = base / d
            if (not rel.parts and d in SKIPPED) or path.resolve() in skip or d == "__pycache__":
                continue
            if path.is_symlink():
                files.append(d)  # a linked folder is linked, not copied: the workflow reads it
            else:
                keep.append(d)
        dirs[:] = keep
        (target / rel).mkdir(exist_ok=True)
        for name in files:
            count += 1
            if count > MAX_MIRRORED:
                raise ConfigError(
                    f"snakemake: {source} holds more than {MAX_MIRRORED:,} files; keep data in a "
                    "subfolder linked from it, or run in place with isolate=False"
                )
            link = target / rel / name
            if not os.path.lexists(link):
                link.symlink_to(base / name)


def workflow_builder(
    snakefile: Path,
    targets: list[str],
    config: dict[str, Any],
    cores: int,
    workdir: Path | None = None,
    isolate: bool = True,
) -> Callable[..., None]:
    """The declaring function of a task that runs `snakefile` (an absolute path): targets, config
    and cores come from the form (or the API), with these defaults."""
    path = snakefile.resolve()
    if not path.is_file():
        raise ConfigError(f"app.snakemake(): no Snakefile at {str(snakefile)!r}")
    if workdir is not None and not workdir.is_dir():
        raise ConfigError(f"app.snakemake(): no folder {str(workdir)!r} (workdir=)")
    default_config = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in config.items()]

    def workflow(
        targets: list[str] = list(targets),  # noqa: B006
        config: ConfigLines = default_config,
        cores: Cores = cores,
        *,
        pipe: Pipeline,
    ) -> None:
        pipe.snakemake(
            path,
            targets=[t.strip() for t in targets if t.strip()],
            config=parse_config(config),
            cores=cores,
            workdir=workdir,
            isolate=isolate,
        )

    workflow.__doc__ = (
        f"Run the Snakemake workflow {path.parent.name}/{path.name}.\n\n"
        "Args:\n    targets: Files or rules to build, one per line (empty: the first rule).\n"
        "    config: Workflow config as key=value lines (values in JSON or plain text); "
        "they override the Snakefile's configfile.\n"
        "    cores: How many cores Snakemake may use.\n"
    )
    return workflow


def _check_config(lines: list[str]) -> list[str]:
    for line in lines:
        key, sep, _ = line.partition("=")
        if line.strip() and (not sep or not key.strip()):
            raise ValueError(f"{line!r} is not key=value")
    return lines


ConfigLines = Annotated[list[str], AfterValidator(_check_config)]
Cores = Annotated[int, Field(ge=1, le=256)]


def parse_config(lines: list[str]) -> dict[str, Any]:
    """key=value lines: JSON values (numbers, true, lists) stay typed, anything else is text."""
    config: dict[str, Any] = {}
    for line in _check_config(lines):
        if not line.strip():
            continue
        key, _, value = line.partition("=")
        try:
            config[key.strip()] = json.loads(value)
        except ValueError:
            config[key.strip()] = value.strip()
    return config


# -- the child process ---------------------------------------------------------------------------
JOB_EVENTS = ("job_info", "job_finished", "job_error")
FIELDS = (
    "jobid",
    "job_id",
    "rule_name",
    "rule_msg",
    "wildcards",
    "input",
    "output",
    "log",
    "shellcmd",
    "done",
    "total",
    "stats",
)


def _record_events(record: LogRecord, text_filter: Any, text_format: Any) -> list[dict[str, Any]]:
    """What one of Snakemake's log records becomes on the events pipe: its job, progress or run
    event, then its text as a log event when Snakemake's default filter shows it."""
    event = getattr(record, "event", None)
    kind = str(getattr(event, "value", event)) if event is not None else None
    out: list[dict[str, Any]] = []
    if kind in (*JOB_EVENTS, "progress", "run_info"):
        out.append({"event": kind, **{k: getattr(record, k) for k in FIELDS if hasattr(record, k)}})
    text = text_format.format(record) if text_filter.filter(record) else None
    if text and text.strip():
        out.append(
            {
                "event": "log",
                "text": text,
                "job": kind in JOB_EVENTS,
                "level": "ERROR" if record.levelno >= ERROR else "INFO",
            }
        )
    return out


class _EventWriter:
    """Writes events as JSON lines on the events pipe and numbers the job events: each number goes
    to stdout and stderr too, as a sync mark after what the rules wrote before that event."""

    def __init__(self, stream: Any, lock: threading.Lock) -> None:
        self.stream = stream
        self.lock = lock
        self.seq = 0

    def write(self, events: list[dict[str, Any]]) -> None:
        with self.lock:
            for data in events:
                mark = data["event"] in JOB_EVENTS
                if mark:
                    self.seq += 1
                    data["seq"] = self.seq
                self.stream.write(json.dumps(data, default=str) + "\n")
                self.stream.flush()
                if mark:
                    self._mark()

    def _mark(self) -> None:
        # What the rules wrote before this event is in the pipes before this mark.
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            write_line(fd, f"{SYNC}{self.seq}\n".encode())


def _plugin_module(stream: Any) -> types.ModuleType:
    """A logger plugin, registered in-process as `snakemake_logger_plugin_mieruka`. It is the
    workflow's only text log too (it writes to stream): Snakemake's messages travel as events, so
    the child's stdout and stderr carry only what the rules print."""
    from snakemake.logging import DefaultFilter, DefaultFormatter
    from snakemake_interface_logger_plugins.base import LogHandlerBase

    lock = threading.Lock()

    class LogHandler(LogHandlerBase):
        def __post_init__(self) -> None:
            settings = self.common_settings
            self.events = _EventWriter(stream, lock)
            self.text_filter = DefaultFilter(
                settings.quiet, settings.debug_dag, settings.dryrun, settings.printshellcmds
            )
            self.text_format = DefaultFormatter(settings.quiet, settings.show_failed_logs)

        def emit(self, record: LogRecord) -> None:
            self.events.write(_record_events(record, self.text_filter, self.text_format))

        @property
        def writes_to_stream(self) -> bool:
            return True

        @property
        def writes_to_file(self) -> bool:
            return False

        @property
        def has_filter(self) -> bool:
            return True

        @property
        def has_formatter(self) -> bool:
            return True

        @property
        def needs_rulegraph(self) -> bool:
            return False

    module = types.ModuleType("snakemake_logger_plugin_mieruka")
    module.LogHandler = LogHandler  # type: ignore[attr-defined]
    return module


def main() -> None:
    from snakemake.cli import main as snakemake_main
    from snakemake_interface_logger_plugins.registry import LoggerPluginRegistry

    args = sys.argv[1:]
    if args[:1] != ["--events-fd"] or len(args) < 2:
        sys.exit("usage: python -m mieruka.pipeline.snakemake --events-fd FD SNAKEMAKE-ARGS...")
    stream = os.fdopen(int(args[1]), "w", buffering=1)
    LoggerPluginRegistry().register_plugin("snakemake_logger_plugin_mieruka", _plugin_module(stream))
    install()
    snakemake_main(args[2:])


if __name__ == "__main__":
    main()
