"""Snakemake workflows as pipeline steps, with every rule execution visible as a step of its own.

The workflow runs unchanged, through Snakemake's own command line, in a child process
(`python -m mieruka.pipeline.snakemake`). That process registers a Snakemake logger plugin
(snakemake-interface-logger-plugins) which writes each job event (JOB_INFO, JOB_FINISHED,
JOB_ERROR) as a JSON line on a pipe; the pipeline runner turns them into rule steps.

A rule's log is what the workflow printed while it was the only rule running, plus the files
named in its `log:` directive when it ends; the rest stays in the workflow step's log."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import types
from collections.abc import Callable
from logging import LogRecord
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field

from ..core.clock import utcnow
from ..core.steps import StepRecord, StepStatus
from ..errors import MissingExtraError
from .graph import Pipeline, Ref, StepDef

if TYPE_CHECKING:
    from .runner import PipelineRun

MAX_RULE_LOG_BYTES = 1_000_000


def snakemake_argv(step: StepDef, folder: Path, control: Path, resolve: Callable[[Any], Any]) -> list[str]:
    if importlib.util.find_spec("snakemake") is None:
        raise MissingExtraError("Snakemake workflows", "snakemake")
    spec = step.snakemake
    workdir = resolve(spec["workdir"]) if isinstance(spec.get("workdir"), Ref) else spec.get("workdir")
    directory = Path(str(workdir)) if workdir else folder
    config_file = control / f"{step.name}.config.json"
    config_file.write_text(json.dumps(resolve(spec["config"]), default=str))
    # --logger takes several names: it must not come last, or it would swallow the targets.
    args = ["--logger", "mieruka", "--snakefile", spec["snakefile"], "--cores", str(spec["cores"]),
            "--directory", str(directory), "--configfile", str(config_file),
            "--rerun-incomplete", "--printshellcmds", "--nocolor", *spec["extra_args"]]
    targets = [str(t) for t in spec["targets"]]
    return [sys.executable, "-m", "mieruka.pipeline.snakemake", *args, *targets]


def workflow_builder(snakefile: Path, targets: list[str], config: dict[str, Any], cores: int) -> Callable[..., None]:
    """The declaring function of a task that runs `snakefile`: targets, config and cores come
    from the form (or the API), with these defaults."""
    path = snakefile.resolve()
    if not path.is_file():
        from ..errors import ConfigError

        raise ConfigError(f"app.snakemake(): no Snakefile at {str(snakefile)!r}")
    default_config = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in config.items()]

    def workflow(targets: list[str] = list(targets), config: ConfigLines = default_config,  # noqa: B006
                 cores: Cores = cores, *, pipe: Pipeline) -> None:
        pipe.snakemake(path, targets=[t.strip() for t in targets if t.strip()], config=parse_config(config),
                       cores=cores)

    workflow.__doc__ = (f"Run the Snakemake workflow {path.parent.name}/{path.name}.\n\n"
                        "Args:\n    targets: Files or rules to build, one per line (empty: the first rule).\n"
                        "    config: Workflow config as key=value lines (values in JSON or plain text).\n"
                        "    cores: How many cores Snakemake may use.\n")
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


class RuleTracker:
    """Turns the workflow's job events into rule steps (runner side)."""

    def __init__(self, run: PipelineRun, step: StepDef) -> None:
        self.run = run
        self.step = step
        self.workdir = run.work / step.name
        workdir = step.snakemake.get("workdir")
        if workdir and not isinstance(workdir, Ref):
            self.workdir = Path(str(workdir))
        self.by_jobid: dict[int, str] = {}
        self.outputs: dict[str, str] = {}  # output file -> rule step
        self.logs: dict[str, list[str]] = {}
        self.running: set[str] = set()
        self._lock = threading.Lock()
        self._count = 0
        run.routes[step.name] = self.target

    def target(self, stream: str) -> str:
        """Where a line of the workflow's output goes: the rule running, if only one is."""
        with self._lock:
            if stream == "stdout" and len(self.running) == 1:
                return next(iter(self.running))
        return self.step.name

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "job_info":
            self._started(event)
        elif kind == "job_finished":
            self._ended(event.get("job_id"), StepStatus.SUCCEEDED, None)
        elif kind == "job_error":
            self._ended(event.get("jobid"), StepStatus.FAILED, "the rule failed; see its log")
        elif kind == "progress":
            done, total = event.get("done"), event.get("total")
            if isinstance(done, int) and isinstance(total, int) and total > 0:
                self.run.step_progress(self.step.name, done / total, f"{done} of {total} jobs done")
        elif kind == "end":
            code = event.get("code")
            with self._lock:
                left = list(self.running)
                self.running.clear()
            for name in left:
                self.run.set_step(name, status=StepStatus.FAILED if code else StepStatus.CANCELLED,
                                  finished_at=utcnow(), error="the workflow stopped while it ran")

    def _started(self, event: dict[str, Any]) -> None:
        rule = str(event.get("rule_name") or "rule")
        wildcards = event.get("wildcards") or {}
        label = rule + (f"[{','.join(f'{k}={v}' for k, v in wildcards.items())}]" if wildcards else "")
        with self._lock:
            self._count += 1
            name = label
            earlier = self.run.records.get(name)
            if earlier is not None and not (earlier.parent == self.step.name and earlier.reused):
                name = f"{label}-{event.get('jobid')}"
            inputs = [str(f) for f in event.get("input") or []]
            depends = sorted({self.outputs[f] for f in inputs if f in self.outputs})
            for out in event.get("output") or []:
                self.outputs[str(out)] = name
            self.by_jobid[int(event.get("jobid", -self._count))] = name
            self.logs[name] = [str(f) for f in event.get("log") or []]
            self.running.add(name)
        parent = self.run.records[self.step.name]
        description = str(event.get("shellcmd") or "").strip() or f"rule {rule}"
        self.run.add_record(StepRecord(
            job_id=parent.job_id, name=name, position=parent.position + min(self._count, 999), kind="rule",
            status=StepStatus.RUNNING, depends_on=depends, description=description[:2000], parent=self.step.name,
            started_at=utcnow(), message=str(event.get("rule_msg") or "") or None))

    def _ended(self, jobid: Any, status: StepStatus, error: str | None) -> None:
        try:
            key = int(jobid)
        except (TypeError, ValueError):
            return
        with self._lock:
            name = self.by_jobid.get(key)
            if name is None or name not in self.running:
                return
            self.running.discard(name)
            logs = self.logs.get(name, [])
        for log in logs:
            path = self.workdir / log
            try:
                data = path.read_bytes()[-MAX_RULE_LOG_BYTES:]
            except OSError:
                continue
            for line in data.decode("utf-8", "replace").splitlines():
                self.run.step_log(name).add("stdout", line)
        self.run.step_log(name).flush()
        fields: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error}
        if status is StepStatus.SUCCEEDED:
            fields["progress"] = 1.0
        self.run.set_step(name, **fields)


# -- the child process ---------------------------------------------------------------------------
def _plugin_module(stream: Any) -> types.ModuleType:
    """A logger plugin, registered in-process as `snakemake_logger_plugin_mieruka`."""
    from snakemake_interface_logger_plugins.base import LogHandlerBase

    lock = threading.Lock()

    class LogHandler(LogHandlerBase):
        def emit(self, record: LogRecord) -> None:
            event = getattr(record, "event", None)
            if event is None:
                return
            kind = str(getattr(event, "value", event))
            if kind not in ("job_info", "job_finished", "job_error", "progress"):
                return
            data: dict[str, Any] = {"event": kind}
            for key in ("jobid", "job_id", "rule_name", "rule_msg", "wildcards", "input", "output", "log",
                        "shellcmd", "done", "total"):
                if hasattr(record, key):
                    data[key] = getattr(record, key)
            with lock:
                stream.write(json.dumps(data, default=str) + "\n")
                stream.flush()

        @property
        def writes_to_stream(self) -> bool:
            return False

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
    snakemake_main(args[2:])


if __name__ == "__main__":
    main()

