"""Runs a pipeline inside its job's execution (the worker process, whatever the executor): plans the
steps, starts each ready step in a child process of its own, streams its output into the step's
log, and records every state change through the job's recorder, so the store and the event
stream see steps exactly like the job itself.

Step outputs are kept in the job's work folder (`.control/state.json` and one folder per step):
a retry of the job reuses every step that succeeded before and whose definition has not changed."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic_core import to_jsonable_python

from ..core.clock import utcnow
from ..core.steps import StepRecord, StepStatus, ready_steps, topological_order
from ..errors import ConfigError
from ..notes import Note, note
from ..process import kill_tree
from . import protocol, step_process
from .graph import Pipeline, StepDef
from .resolve import argv_word, render_shell, resolve
from .rules import RuleTracker

MAX_LINE = 16_384
MAX_SHOWN_OUTPUT = 256 * 1024
FLUSH_SECONDS = 0.1
Line = tuple[datetime, str, str]


class StepReporter(Protocol):
    """What the job's recorder offers pipelines (recorder.AttemptRecorder implements it)."""

    def lines(self, job_id: int, lines: list[Line], step: str | None = None) -> None: ...

    def steps_planned(self, job_id: int, steps: list[StepRecord]) -> None: ...

    def step_saved(self, step: StepRecord) -> None: ...

    def progress(self, job_id: int, fraction: float | None, message: str | None) -> None: ...


class PipelineFailed(Exception):
    """A step that was not allowed to fail failed: the job fails with this message."""


class PipelineRun:
    def __init__(self, pipe: Pipeline, context: Any, app_ref: str, parallel: int) -> None:
        self.pipe = pipe
        self.context = context
        self.job_id: int = context.id
        reporter = context._reporter
        if not all(hasattr(reporter, m) for m in ("steps_planned", "step_saved", "lines")):
            raise ConfigError("this executor's recorder cannot record pipeline steps")
        self.reporter: StepReporter = reporter
        self.app_ref = app_ref
        self.parallel = max(1, parallel)
        self.work: Path = context._artifacts.work_dir(self.job_id)
        self.records: dict[str, StepRecord] = {}
        self.outputs: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._logs: dict[str, _StepLog] = {}
        self._stop_flusher = threading.Event()
        self._saved: dict[str, Any] = {}
        self.trackers: dict[str, RuleTracker] = {}  # Snakemake steps: their rule steps and output
        self.processes: set[int] = set()  # pids of the step processes running now

    # -- planning ------------------------------------------------------------------------------
    def plan(self) -> None:
        steps = self.pipe.steps
        if not steps:
            raise ConfigError("the pipeline declared no steps")
        topological_order({n: s.depends_on for n, s in steps.items()})  # raises on a cycle
        (self.work / ".control").mkdir(parents=True, exist_ok=True)
        self._saved = self._load_state()
        reused: set[str] = set()
        for name, step in steps.items():
            before = self._saved.get(name)
            record = StepRecord(
                job_id=self.job_id,
                name=name,
                position=step.position * 1000,
                kind=step.kind,
                depends_on=step.depends_on,
                description=step.description[:2000],
                allow_failure=step.allow_failure,
            )
            if (
                before
                and before.get("status") == "succeeded"
                and before.get("fingerprint") == step.fingerprint
                and all(d in reused for d in step.depends_on)
                and (self.work / name).is_dir()
            ):
                reused.add(name)
                self.outputs[name] = before.get("output")
                record = replace(
                    record,
                    status=StepStatus.SUCCEEDED,
                    reused=True,
                    output=_shown(before.get("output")),
                    started_at=_time(before.get("started_at")),
                    finished_at=_time(before.get("finished_at")),
                    progress=1.0,
                    artifacts=list(before.get("artifacts", [])),
                    message=note("step.reused"),
                )
            self.records[name] = record
        # Rule executions of a workflow that ran before stay listed (Snakemake does not run them
        # again when their outputs exist); a rule that runs again replaces its entry.
        for saved in self._saved.get(".rules", []):
            if isinstance(saved, dict) and saved.get("parent") in steps and saved.get("name") not in self.records:
                self.records[saved["name"]] = StepRecord(
                    job_id=self.job_id,
                    name=saved["name"],
                    position=int(saved.get("position", 0)),
                    kind="rule",
                    status=StepStatus.SUCCEEDED,
                    depends_on=list(saved.get("depends_on", [])),
                    description=str(saved.get("description", "")),
                    parent=saved["parent"],
                    started_at=_time(saved.get("started_at")),
                    finished_at=_time(saved.get("finished_at")),
                    progress=1.0,
                    reused=True,
                    message=note("step.done_before"),
                )
        self.reporter.steps_planned(self.job_id, list(self.records.values()))

    # -- running -------------------------------------------------------------------------------
    def run(self) -> dict[str, str]:
        self.plan()
        restore = self._stop_steps_on_sigterm()
        flusher = threading.Thread(target=self._flush_loop, name="mieruka-step-logs", daemon=True)
        flusher.start()
        try:
            failed_hard = self._run_steps()
        finally:
            restore()
            self._stop_flusher.set()
            flusher.join(timeout=5)
            self._flush_all()
        summary = {n: self.records[n].status.value for n in self.pipe.steps}
        if failed_hard:
            first = self.records[failed_hard[0]]
            raise PipelineFailed(note("error.step_failed", step=repr(first.name), error=first.error or "failed"))
        return summary

    def _run_steps(self) -> list[str]:
        """Starts each step once it is ready, `parallel` at most at once, until none runs; the
        steps that failed without being allowed to (those still pending then are skipped)."""
        declared = list(self.pipe.steps)
        running: set[str] = set()
        with self._changed:
            while True:
                ready = self._ready(declared)
                failed_hard = [
                    n
                    for n in declared
                    if self.records[n].status is StepStatus.FAILED and not self.records[n].allow_failure
                ]
                if not failed_hard:
                    for name in ready[: self.parallel - len(running)]:
                        self._start(name, running)
                self._report_job_progress()
                if not running:
                    break
                self._changed.wait(1.0)
            for name in declared:
                if self.records[name].status is StepStatus.PENDING:
                    self._set(name, status=StepStatus.SKIPPED, message=note("step.not_run"))
        return failed_hard

    def _ready(self, declared: list[str]) -> list[str]:
        """The steps that can start now, once those behind a step that did not succeed are skipped."""
        while True:
            status = {n: self.records[n].status for n in declared}
            ready, blocked = ready_steps({n: self.pipe.steps[n].depends_on for n in declared}, status)
            for name in blocked:
                self._set(name, status=StepStatus.SKIPPED, message=note("step.input_failed"))
            if not blocked:
                return ready

    def _start(self, name: str, running: set[str]) -> None:
        running.add(name)
        self._set(
            name,
            status=StepStatus.RUNNING,
            started_at=utcnow(),
            finished_at=None,
            progress=None,
            message=None,
            error=None,
            output=None,
            artifacts=[],
            reused=False,
        )
        threading.Thread(target=self._execute, args=(name, running), daemon=True, name=f"mieruka-step-{name}").start()

    def _stop_steps_on_sigterm(self) -> Callable[[], None]:
        """Whoever stops the job's process with SIGTERM (an executor other than the local one)
        stops its steps too: they are its children, and would outlive it otherwise."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: Any) -> None:
            for pid in list(self.processes):
                kill_tree(pid)
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        def restore() -> None:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

        signal.signal(signal.SIGTERM, on_term)
        return restore

    def result_of(self, returned: Any) -> Any:
        """The job's result: what the declaring function returned, with step outputs filled in."""
        if returned is None:
            return {"steps": {n: r.status.value for n, r in self.records.items()}}
        return to_jsonable_python(resolve(returned, self.outputs, self._step_dir), fallback=str)

    def _execute(self, name: str, running: set[str]) -> None:
        step = self.pipe.steps[name]
        try:
            ok, output, error = self._run_step(step)
        except Exception as exc:
            ok, output, error = False, None, f"{type(exc).__name__}: {exc}"
        self.step_log(name).flush()
        with self._changed:
            if ok:
                self.outputs[name] = output
                self._set(name, status=StepStatus.SUCCEEDED, finished_at=utcnow(), output=_shown(output), progress=1.0)
            else:
                self._set(
                    name,
                    status=StepStatus.FAILED,
                    finished_at=utcnow(),
                    error=error if isinstance(error, Note) else (error or "failed")[:4000],
                    message=note("step.failed_allowed") if step.allow_failure else None,
                )
            self._save_state()
            running.discard(name)
            self._changed.notify_all()

    def _run_step(self, step: StepDef) -> step_process.Outcome:
        folder = self._step_dir(step.name)
        if step.kind != "snakemake":
            shutil.rmtree(folder, ignore_errors=True)  # a re-run starts from a clean folder
        folder.mkdir(parents=True, exist_ok=True)
        env = {
            "PYTHONUNBUFFERED": "1",
            "MIERUKA_JOB_ID": str(self.job_id),
            "MIERUKA_STEP": step.name,
            "MIERUKA_STEP_DIR": str(folder),
            **step.env,
        }
        control = self.work / ".control"
        control.mkdir(exist_ok=True)
        result_file = control / f"{step.name}.result.json"
        result_file.unlink(missing_ok=True)
        events: Callable[[dict[str, Any]], None] | None = None
        if step.kind == "python":
            spec = {
                "app": self.app_ref,
                "task": self.context.task,
                "params": self.context.params,
                "job": {
                    "id": self.job_id,
                    "task": self.context.task,
                    "attempt": self.context.attempt,
                    "max_attempts": self.context.max_attempts,
                },
                "upload_root": str(self.context.upload_root or ""),
                "step": step.name,
                "outputs": {d: self.outputs.get(d) for d in step.depends_on},
                "work": str(self.work),
                "result": str(result_file),
                "sys_path": sys.path,
            }
            spec_file = control / f"{step.name}.spec.pickle"
            spec_file.write_bytes(pickle.dumps(spec))
            argv = [sys.executable, "-m", "mieruka.pipeline.child", str(spec_file)]
        elif step.kind == "shell":
            if isinstance(step.command, str):
                argv = [_shell(), "-c", render_shell(step.command, step.params, self.outputs, self._step_dir)]
            else:
                argv = [argv_word(resolve(a, self.outputs, self._step_dir)) for a in step.command or ()]
        else:
            from .snakemake import snakemake_argv, workflow_folders

            def fill(ref: Any) -> Any:
                return resolve(ref, self.outputs, self._step_dir)

            argv = snakemake_argv(step, folder, control, fill, avoid=self.work.parent.parent)
            tracker = self.trackers[step.name] = RuleTracker(self, step, workflow_folders(step, folder, fill)[1])
            ok, output, error = self._spawn(step, argv, folder, env, result_file, tracker.event)
            return ok, output, (tracker.failure(error or "failed") if not ok else None)
        return self._spawn(step, argv, folder, env, result_file, events)

    def _spawn(
        self,
        step: StepDef,
        argv: list[str],
        folder: Path,
        env: dict[str, str],
        result_file: Path,
        events: Callable[[dict[str, Any]], None] | None,
    ) -> step_process.Outcome:
        event_r = event_w = -1
        pass_fds: tuple[int, ...] = ()
        if events is not None:
            event_r, event_w = os.pipe()
            argv = [argv[0], *argv[1:3], "--events-fd", str(event_w), *argv[3:]]
            pass_fds = (event_w,)
        program = step_process.find_program(argv[0])
        if program is None:
            step_process.close(event_r, event_w)
            return False, None, f"cannot start {argv[0]!r}: no such program"
        # The step's variables come on top of the worker's environment through env(1): only the
        # settings module reads the environment in mieruka's own code.
        variables = [f"{k}={v}" for k, v in env.items()]
        proc = subprocess.Popen(
            ["env", *variables, program, *argv[1:]],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
        )
        self.processes.add(proc.pid)
        step_process.close(event_w)  # the step holds the writing end now
        readers = [
            threading.Thread(target=self._read, args=(step, proc.stdout, "stdout", folder), daemon=True),
            threading.Thread(target=self._read, args=(step, proc.stderr, "stderr", folder), daemon=True),
        ]
        if events is not None:
            readers.append(threading.Thread(target=step_process.read_events, args=(event_r, events), daemon=True))
        for reader in readers:
            reader.start()
        code, timed_out = step_process.wait(proc, step.timeout)
        self.processes.discard(proc.pid)
        for reader in readers:
            reader.join(timeout=10)
        self.step_log(step.name).flush()
        if events is not None:
            events({"event": "end", "code": code})
        return step_process.outcome(step, result_file, code, timed_out)

    # -- output of a step ----------------------------------------------------------------------
    def _read(self, step: StepDef, stream: Any, name: str, folder: Path) -> None:
        log = self.step_log(step.name)
        for raw in iter(stream.readline, b""):
            text = raw.rstrip(b"\n").rstrip(b"\r")[:MAX_LINE].decode("utf-8", "replace")
            directive = protocol.parse(text) if name == "stdout" else None
            if directive is None:
                self.route_line(step.name, name, text)
            elif isinstance(directive, protocol.Progress):
                self.step_progress(step.name, directive.fraction, directive.message)
            else:
                self._attach(step.name, folder, directive, log)
        stream.close()
        tracker = self.trackers.get(step.name)
        if tracker is not None:
            tracker.closed(name)

    def route_line(self, step: str, stream: str, text: str) -> None:
        """One output line of `step` (a Snakemake workflow hands it to the rule running)."""
        tracker = self.trackers.get(step)
        target = tracker.route(stream, text) if tracker is not None else step
        if target is not None:
            self.step_log(target).add(stream, text)

    def step_progress(self, name: str, fraction: float | None, message: str | None) -> None:
        with self._changed:
            record = self.records[name]
            if record.status is not StepStatus.RUNNING:
                return
            self._set(
                name,
                progress=fraction if fraction is not None else record.progress,
                message=message if message is not None else record.message,
            )
            self._report_job_progress()

    def _attach(self, name: str, folder: Path, line: protocol.ArtifactLine, log: _StepLog) -> None:
        path = (folder / line.path).resolve()
        try:
            if not path.is_file():
                raise FileNotFoundError(f"no file {line.path!r} in the step's folder")
            self.context.artifact(line.name, path)
        except Exception as exc:
            log.add("stderr", f"mieruka: cannot attach artifact {line.path!r}: {exc}")
            return
        with self._changed:
            names = [a for a in self.records[name].artifacts if a != line.name] + [line.name]
            self._set(name, artifacts=names)

    # -- records -------------------------------------------------------------------------------
    def _set(self, name: str, **fields: Any) -> None:
        with self._lock:
            record = replace(self.records[name], **fields)
            self.records[name] = record
        self.reporter.step_saved(record)

    def add_record(self, record: StepRecord) -> None:
        """A step found while running (a Snakemake rule execution)."""
        with self._lock:
            self.records[record.name] = record
        self.reporter.step_saved(record)

    def set_step(self, name: str, **fields: Any) -> None:
        with self._changed:
            self._set(name, **fields)

    def _report_job_progress(self) -> None:
        """The job's progress, counting steps the user sees: a workflow counts as its rule steps."""
        declared = [self.records[n] for n in self.pipe.steps]
        done = total = 0
        partial = 0.0
        for record in declared:
            tracker = self.trackers.get(record.name)
            if record.kind == "snakemake" and (tracker is not None or self.saved_rules(record.name)):
                rules_done, rules = tracker.counts() if tracker is not None else self._saved_counts(record.name)
                done, total = done + rules_done, total + rules
            else:
                done, total = done + record.status.finished, total + 1
                if record.status is StepStatus.RUNNING:
                    partial += record.progress or 0.0
        active = [r.name for r in self.records.values() if r.status is StepStatus.RUNNING and r.kind != "snakemake"]
        said = (
            note("job.steps_running", done=done, total=total, steps=active[:3])
            if active
            else note("job.steps_done", done=done, total=total)
        )
        # To the recorder itself: the job's progress() would keep the note's English text only.
        self.reporter.progress(self.job_id, min(1.0, (done + partial) / max(total, 1)), said)

    def _saved_counts(self, name: str) -> tuple[int, int]:
        rules = [r for r in self.records.values() if r.parent == name and r.kind == "rule"]
        return len(rules), max(len(rules), 1)

    def saved_rules(self, step: str) -> list[dict[str, Any]]:
        """Rule executions of workflow `step` that succeeded in an earlier attempt."""
        return [r for r in self._saved.get(".rules", []) if isinstance(r, dict) and r.get("parent") == step]

    def _step_dir(self, name: str) -> Path:
        return self.work / name

    def step_log(self, name: str) -> _StepLog:
        with self._lock:
            log = self._logs.get(name)
            if log is None:
                log = self._logs[name] = _StepLog(self.reporter, self.job_id, name)
            return log

    def _flush_loop(self) -> None:
        while not self._stop_flusher.wait(FLUSH_SECONDS):
            self._flush_all()

    def _flush_all(self) -> None:
        with self._lock:
            logs = list(self._logs.values())
        for log in logs:
            log.flush()

    # -- what a retry reuses -------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.work / ".control" / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_state(self) -> None:
        state: dict[str, Any] = {}
        for name, step in self.pipe.steps.items():
            record = self.records[name]
            if record.status is StepStatus.SUCCEEDED:
                state[name] = {
                    "status": "succeeded",
                    "fingerprint": step.fingerprint,
                    "output": self.outputs.get(name),
                    "artifacts": record.artifacts,
                    "started_at": _iso(record.started_at),
                    "finished_at": _iso(record.finished_at),
                }
        state[".rules"] = [
            {
                "name": r.name,
                "parent": r.parent,
                "position": r.position,
                "depends_on": r.depends_on,
                "description": r.description,
                "started_at": _iso(r.started_at),
                "finished_at": _iso(r.finished_at),
                "outputs": self._rule_outputs(r),
            }
            for r in self.records.values()
            if r.kind == "rule" and r.status is StepStatus.SUCCEEDED
        ]
        # Beside the step folders, under a name no step can have (step names never start with ".").
        tmp = self.work / ".control" / "state.json.part"
        tmp.write_text(json.dumps(state, default=str))
        os.replace(tmp, self.work / ".control" / "state.json")

    def _rule_outputs(self, rule: StepRecord) -> list[str]:
        tracker = self.trackers.get(rule.parent or "")
        if tracker is not None and tracker.saved(rule.name):
            return tracker.saved(rule.name)
        before = next((r for r in self.saved_rules(rule.parent or "") if r.get("name") == rule.name), {})
        return [str(o) for o in before.get("outputs") or []]


class _StepLog:
    """Lines of one step, sent in small batches (every FLUSH_SECONDS or when a step ends)."""

    def __init__(self, reporter: StepReporter, job_id: int, step: str) -> None:
        self.reporter = reporter
        self.job_id = job_id
        self.step = step
        self._lines: list[Line] = []
        self._lock = threading.Lock()

    def add(self, stream: str, text: str) -> None:
        with self._lock:
            self._lines.append((utcnow(), stream, text))
            full = len(self._lines) >= 1000
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        if lines:
            self.reporter.lines(self.job_id, lines, step=self.step)


def _shown(output: Any) -> Any:
    """The output as stored with the step: in full unless it is large (later steps and retries
    always get it in full, from the job's folder)."""
    size = len(json.dumps(output, default=str))
    if size <= MAX_SHOWN_OUTPUT:
        return output
    return {"note": f"the output is {size:,} bytes: too large to show; later steps receive it in full"}


def _shell() -> str:
    return shutil.which("bash") or "/bin/sh"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
