"""An app that notes each import of its module (the pid, in the file COUNTED_APP_LOG names), for
tests/unit/test_zygote.py: a server forks its zygote after importing the app, so the app is
imported once, by the server, and never again by the zygote or its workers (a pipeline's steps,
processes of their own, import it again)."""

from __future__ import annotations

import os

import mieruka

with open(os.environ["COUNTED_APP_LOG"], "a") as log:
    log.write(f"{os.getpid()}\n")

app = mieruka.App("counted imports", workers=2)


@app.task
def pid() -> int:
    return os.getpid()


def step_pid() -> int:
    return os.getpid()


@app.pipeline
def steps(*, pipe: mieruka.Pipeline) -> object:
    return pipe.step(step_pid, name="pid")
