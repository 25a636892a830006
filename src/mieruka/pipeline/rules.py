"""A Snakemake workflow's rule executions as steps (the pipeline run's side): the events the workflow's logger
plugin sends (pipeline/snakemake.py) become rule steps with their state, log, dependencies and
errors; the workflow's output lines go to the rule that wrote them.

Events and output travel on different pipes. After each job event the child writes a sync mark
(SYNC) on its stdout and its stderr; an event is applied only once both streams reached its mark,
and a stream goes on past a mark only once the event is applied. So every line is attributed with
the state of the workflow as it was when the line was written, however the threads are scheduled."""

from __future__ import annotations

import os
import re
import threading
from collections import deque
from pathlib import Path
from typing import Any, Protocol

from ..core.clock import utcnow
from ..core.steps import StepRecord, StepStatus
from ..notes import note
from .graph import StepDef
from .tagging import JOB_TAG, SYNC

MAX_RULE_LOG_BYTES = 1_000_000
SYNC_WAIT = 10.0  # a mark or event that never comes (a killed workflow) holds nothing up longer
STREAMS = ("stdout", "stderr")
_ANNOTATION = re.compile(r" \([a-z ,]+\)$")  # Snakemake's "(temp)", "(pipe)", ... after a file name


class StepLog(Protocol):
    def add(self, stream: str, text: str) -> None: ...

    def flush(self) -> None: ...


class Run(Protocol):
    """What a tracker needs of the pipeline run it serves (runner.PipelineRun)."""

    records: dict[str, StepRecord]

    def saved_rules(self, step: str) -> list[dict[str, Any]]: ...

    def step_log(self, name: str) -> StepLog: ...

    def step_progress(self, name: str, fraction: float | None, message: str | None) -> None: ...

    def add_record(self, record: StepRecord) -> None: ...

    def set_step(self, name: str, **fields: Any) -> None: ...


class RuleTracker:
    """Rule steps of one Snakemake step; `event` takes the plugin's events, `route` the output lines."""

    def __init__(self, run: Run, step: StepDef, workdir: Path) -> None:
        self.run = run
        self.step = step
        self.workdir = workdir
        self.by_jobid: dict[int, str] = {}
        self.outputs: dict[str, str] = {}  # output file -> rule step
        self.files: dict[str, list[str]] = {}  # rule step -> its output files, kept for a retry's graph
        self.logs: dict[str, list[str]] = {}
        self.labels: dict[str, str] = {}  # rule step -> "rule map_reads (sample=B)"
        self.last_stderr: dict[str, str] = {}
        self.running: set[str] = set()
        self.early: dict[int, list[tuple[str, str]]] = {}  # tagged lines of a job not started yet
        self.failures: list[str] = []
        self.errors: list[str] = []  # Snakemake's own error messages (a workflow that cannot start)
        self.stray: deque[str] = deque(maxlen=5)  # the workflow's last stderr lines outside any rule
        self.total: int | None = None
        self._lock = threading.Lock()
        self._sync = threading.Condition()
        self._seen = dict.fromkeys(STREAMS, 0)
        self._closed: set[str] = set()
        self._applied = 0
        self._finished = False
        self._count = 0
        for saved in run.saved_rules(step.name):
            for out in saved.get("outputs") or []:
                self.outputs[_path(out)] = str(saved["name"])
                self.files.setdefault(str(saved["name"]), []).append(_path(out))

    # -- output lines ----------------------------------------------------------------------------
    def route(self, stream: str, text: str) -> str | None:
        """The step a line of the workflow's output belongs to: the rule running, if only one is;
        None for a sync mark, which is consumed."""
        if text.startswith(JOB_TAG):
            self._tagged(stream, text)
            return None
        if SYNC not in text:
            return self._target(stream, text)
        before, _, mark = text.partition(SYNC)
        if before:
            self.run.step_log(self._target(stream, before)).add(stream, before)
        try:
            seq = int(mark.split()[0])
        except (ValueError, IndexError):
            return None
        with self._sync:
            self._seen[stream] = max(self._seen[stream], seq)
            self._sync.notify_all()
            self._sync.wait_for(lambda: self._applied >= seq or self._finished, SYNC_WAIT)
        return None

    def closed(self, stream: str) -> None:
        with self._sync:
            self._closed.add(stream)
            self._sync.notify_all()

    def _tagged(self, stream: str, text: str) -> None:
        """A line a job wrote (pipeline/tagging.py): its rule's, also after the rule ended."""
        head, _, line = text[len(JOB_TAG) :].partition(" ")
        try:
            jobid = int(head)
        except ValueError:
            jobid = -1
        with self._lock:
            name = self.by_jobid.get(jobid)
            if name is None and jobid >= 0 and not self._finished:
                # Its start event is not applied yet (another pipe): the line waits for it.
                self.early.setdefault(jobid, []).append((stream, line))
                return None
            if name is not None and stream == "stderr" and line.strip():
                self.last_stderr[name] = line.strip()
        self.run.step_log(name or self.step.name).add(stream, line)
        return None

    def _target(self, stream: str, text: str) -> str:
        with self._lock:
            if len(self.running) == 1:
                name = next(iter(self.running))
                if stream == "stderr" and text.strip():
                    self.last_stderr[name] = text.strip()
                return name
            if stream == "stderr" and text.strip():
                self.stray.append(text.strip())
        return self.step.name

    # -- events ----------------------------------------------------------------------------------
    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "log":
            self._log(event)
            return
        if kind == "end":
            self._end(event.get("code"))
            return
        seq = event.get("seq")
        if isinstance(seq, int):
            with self._sync:
                self._sync.wait_for(lambda: all(self._seen[s] >= seq or s in self._closed for s in STREAMS), SYNC_WAIT)
        try:
            self._apply(kind, event)
        finally:
            if isinstance(seq, int):
                with self._sync:
                    self._applied = max(self._applied, seq)
                    self._sync.notify_all()

    def _apply(self, kind: Any, event: dict[str, Any]) -> None:
        if kind == "job_info":
            self._started(event)
        elif kind == "job_finished":
            self._ended(event.get("job_id"), StepStatus.SUCCEEDED)
        elif kind == "job_error":
            self._ended(event.get("jobid"), StepStatus.FAILED)
        elif kind == "run_info":  # the jobs Snakemake plans, before any runs: the count from the start
            stats = event.get("stats")
            total = stats.get("total") if isinstance(stats, dict) else None
            if isinstance(total, int) and total > 0:
                with self._lock:
                    self.total = total
                self.run.step_progress(self.step.name, 0.0, note("step.jobs_done", done=0, total=total))
        elif kind == "progress":
            done, total = event.get("done"), event.get("total")
            if isinstance(done, int) and isinstance(total, int) and total > 0:
                with self._lock:
                    self.total = total
                self.run.step_progress(self.step.name, done / total, note("step.jobs_done", done=done, total=total))

    def _log(self, event: dict[str, Any]) -> None:
        text = str(event.get("text") or "")
        error = event.get("level") == "ERROR"
        if error and not event.get("job"):
            with self._lock:
                self.errors.append(text.strip())
        log = self.run.step_log(self.step.name)
        for line in text.splitlines():
            log.add("stderr" if error else "stdout", line)

    def _end(self, code: Any) -> None:
        with self._sync:
            self._finished = True
            self._sync.notify_all()
        with self._lock:
            left = list(self.running)
            self.running.clear()
            early = [line for lines in self.early.values() for line in lines]
            self.early.clear()
        for stream, line in early:
            self.run.step_log(self.step.name).add(stream, line)
        for name in left:
            self.run.set_step(
                name,
                status=StepStatus.FAILED if code else StepStatus.CANCELLED,
                finished_at=utcnow(),
                error=note("error.workflow_stopped"),
            )

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
            depends = sorted({self.outputs[f] for f in map(_path, event.get("input") or []) if f in self.outputs})
            outputs = [_path(out) for out in event.get("output") or []]
            for out in outputs:
                self.outputs[out] = name
            self.files[name] = outputs
            jobid = int(event.get("jobid", -self._count))
            self.by_jobid[jobid] = name
            early = self.early.pop(jobid, [])
            self.logs[name] = [_path(f) for f in event.get("log") or []]
            described = ", ".join(f"{k}={v}" for k, v in wildcards.items())
            self.labels[name] = f"rule {rule}" + (f" ({described})" if described else "")
            self.running.add(name)
        parent = self.run.records[self.step.name]
        description = str(event.get("shellcmd") or "").strip() or f"rule {rule}"
        self.run.add_record(
            StepRecord(
                job_id=parent.job_id,
                name=name,
                position=parent.position + min(self._count, 999),
                kind="rule",
                status=StepStatus.RUNNING,
                depends_on=depends,
                description=description[:2000],
                parent=self.step.name,
                started_at=utcnow(),
                message=str(event.get("rule_msg") or "") or None,
            )
        )
        for stream, line in early:
            if stream == "stderr" and line.strip():
                with self._lock:
                    self.last_stderr[name] = line.strip()
            self.run.step_log(name).add(stream, line)

    def _ended(self, jobid: Any, status: StepStatus) -> None:
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
            try:
                data = (self.workdir / log).read_bytes()[-MAX_RULE_LOG_BYTES:]
            except OSError:
                continue
            if not data.strip():
                continue
            rule_log = self.run.step_log(name)
            rule_log.add("stdout", f"--- {log} ---")
            for line in data.decode("utf-8", "replace").splitlines():
                rule_log.add("stdout", line)
        self.run.step_log(name).flush()
        fields: dict[str, Any] = {"status": status, "finished_at": utcnow()}
        if status is StepStatus.SUCCEEDED:
            fields["progress"] = 1.0
        else:
            fields["error"] = self._rule_error(name, logs)
            with self._lock:
                self.failures.append(fields["error"])
        self.run.set_step(name, **fields)

    def _rule_error(self, name: str, logs: list[str]) -> str:
        with self._lock:
            said = self.last_stderr.get(name)
        text = f"{self.labels.get(name, name)} failed"
        if said:
            text += f": {said[:300]}"
        where = [f"step {name!r}"] + [f"log {log}" for log in logs]
        return f"{text} (see {', '.join(where)})"

    # -- what the job shows ----------------------------------------------------------------------
    def failure(self, fallback: str) -> str:
        """The workflow step's error: the rules that failed, else Snakemake's own message."""
        with self._lock:
            failures, errors, stray = list(self.failures), list(self.errors), list(self.stray)
        if failures:
            more = f" (and {len(failures) - 1} more rule(s))" if len(failures) > 1 else ""
            return failures[0] + more
        if errors:
            return "snakemake: " + errors[0][:2000]
        if stray:
            return f"{fallback}: {stray[-1][:1000]}"
        return fallback

    def counts(self) -> tuple[int, int]:
        """(rule steps done, rule steps in all) for the job's "N/M steps done"."""
        rules = [r for r in self.run.records.values() if r.parent == self.step.name and r.kind == "rule"]
        reused = sum(1 for r in rules if r.reused)
        done = sum(1 for r in rules if r.status.finished)
        with self._lock:
            total = self.total
        if self.run.records[self.step.name].status is StepStatus.SUCCEEDED:
            return done, max(done, 1)  # a workflow that succeeded ran all it was going to
        return done, max(reused + (total or 0), len(rules), 1)

    def saved(self, name: str) -> list[str]:
        with self._lock:
            return list(self.files.get(name, []))


def _path(value: Any) -> str:
    text = _ANNOTATION.sub("", str(value))
    return os.path.normpath(text) if text else text
