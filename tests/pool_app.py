"""The app of the browser test of mieruka's own messages in each language
(tests/browser/test_languages_browser.py): on the Celery executor, a compute pool of local workers
that its jobs start, a pipeline whose second step waits for a file, and a task that fails and
waits five minutes for its retry."""

from __future__ import annotations

import mieruka
from mieruka.pools import LocalWorkers

app = mieruka.App("pooled")
app.pool("compute", LocalWorkers(concurrency=2))


@app.pipeline(queue="compute")
def two_steps(go: str, *, pipe: mieruka.Pipeline) -> None:
    """Its second step runs until the file `go` exists (two minutes at most)."""
    first = pipe.shell(["true"], name="prepare")
    pipe.shell(
        "for i in $(seq 1200); do [ -e {go} ] && exit 0; sleep 0.1; done; exit 1", go=go, name="wait", after=[first]
    )


@app.task(queue="compute", retries=1, retry_backoff="5m")
def flaky() -> None:
    raise RuntimeError("the device did not answer")
