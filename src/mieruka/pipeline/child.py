"""Runs one Python step of a pipeline in a process of its own (started by the pipeline's run, run.py):
loads the app, declares the pipeline again with the job's parameters to find the step's function,
calls it with the outputs of the steps it depends on, and writes its result for the run.

Its stdout and stderr are the step's log; progress and artifacts travel as protocol lines."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import pickle
import sys
import traceback
import typing
from os import PathLike
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python

from ..core.job import Job
from ..notes import note
from . import protocol
from .graph import Pipeline
from .resolve import resolve


class StepJob:
    """The `mieruka.Job` a step function gets: progress and artifacts belong to the step."""

    def __init__(self, job: dict[str, Any], params: dict[str, Any], folder: Path) -> None:
        self.id: int = job["id"]
        self.task: str = job["task"]
        self.attempt: int = job["attempt"]
        self.max_attempts: int = job["max_attempts"]
        self.params = params
        self.folder = folder

    def progress(self, fraction: float | None = None, message: str | None = None) -> None:
        print(protocol.progress_line(fraction, message), flush=True)

    def log(self, message: str) -> None:
        print(message, flush=True)

    def artifact(self, name: str, data: bytes | str | PathLike[str], content_type: str | None = None) -> None:
        from ..artifacts.local import check_name

        check_name(name)
        if isinstance(data, bytes | str):
            target = self.folder / ".artifacts" / name
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(data.encode() if isinstance(data, str) else data)
            path = target
        else:
            path = Path(data).resolve()
        rel = os.path.relpath(path, self.folder)
        print(f"::artifact {rel} {name}", flush=True)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from ..loader import load_app
    from ..runner import file_opener

    app = load_app(spec["app"])
    task = app.tasks.get(spec["task"])
    pipeline_task = getattr(task.func, "mieruka_pipeline", None)
    if pipeline_task is None:
        raise RuntimeError(f"task {spec['task']!r} is not a pipeline")
    kwargs = task.signature.bind(spec["params"], file_opener(Path(spec["upload_root"])))
    folder = Path.cwd()
    job = StepJob(spec["job"], spec["params"], folder)
    pipe = Pipeline(job, app.folder)
    assert task.signature.job_param is not None
    kwargs[task.signature.job_param] = pipe
    pipeline_task.builder(**kwargs)
    step = pipe.steps.get(spec["step"])
    if step is None or step.func is None:
        raise RuntimeError(f"the pipeline no longer declares a Python step named {spec['step']!r}")
    work = Path(spec["work"])
    outputs = spec["outputs"]
    args = resolve(step.args, outputs, lambda name: work / name)
    call_kwargs = resolve(step.kwargs, outputs, lambda name: work / name)
    job_param = _job_param(step.func)
    if job_param is not None:
        call_kwargs[job_param] = job
    value = step.func(*args, **call_kwargs)
    if inspect.iscoroutine(value):
        value = asyncio.run(value)
    return {"ok": True, "output": to_jsonable_python(value, fallback=str)}


def _job_param(func: Any) -> str | None:
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        return None
    for name, hint in hints.items():
        if hint is Job or (typing.get_origin(hint) is not None and Job in typing.get_args(hint)):
            return name
    return None


def main() -> None:
    spec_path = Path(sys.argv[1])
    spec = pickle.loads(spec_path.read_bytes())
    sys.path[:] = spec["sys_path"]
    result_path = Path(spec["result"])
    try:
        result = run(spec)
    except BaseException as exc:
        traceback.print_exc()
        text = str(exc)
        result = {"ok": False, "error": f"{type(exc).__name__}: {text}" if text else type(exc).__name__}
    sys.stdout.flush()
    sys.stderr.flush()
    tmp = result_path.with_suffix(".part")
    try:
        tmp.write_text(json.dumps(result))
    except (TypeError, ValueError) as exc:
        tmp.write_text(json.dumps({"ok": False, "error": note("error.step_result_not_json", error=str(exc)).stored()}))
    os.replace(tmp, result_path)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
