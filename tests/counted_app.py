"""An app that notes each import of its module (the pid, in the file COUNTED_APP_LOG names), for
tests/unit/test_zygote.py: a server forks its zygote after importing the app, so the app is
imported once, by the server, and never again by the zygote or its workers (a pipeline's steps,
processes of their own, import it again); unless the import left a file open (COUNTED_APP_HOLD)."""

from __future__ import annotations

import os
import sys

import mieruka

with open(os.environ["COUNTED_APP_LOG"], "a") as log:
    log.write(f"{os.getpid()}\n")

# An app holding a file (a connection, a socket) from its import: a fork would share it.
HELD = open(os.devnull) if os.environ.get("COUNTED_APP_HOLD") else None  # noqa: SIM115

app = mieruka.App("counted imports", workers=2)


@app.task
def pid() -> int:
    return os.getpid()


@app.task
def heavy() -> list[str]:
    """What of the server's own a worker holds: nothing of its store or web layer, nor asyncio
    unless the app has a coroutine task (COUNTED_APP_ASYNC)."""
    server_only = {"sqlalchemy", "fastapi", "starlette", "uvicorn", "asyncio"}
    return sorted({name.split(".")[0] for name in sys.modules} & server_only)


if os.environ.get("COUNTED_APP_ASYNC"):

    @app.task
    async def pause() -> None:
        pass


def step_pid() -> int:
    return os.getpid()


@app.pipeline
def steps(*, pipe: mieruka.Pipeline) -> object:
    return pipe.step(step_pid, name="pid")
