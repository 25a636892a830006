"""An app whose module starts a thread when imported, for tests/unit/test_zygote.py: forking a
process with such a thread is unsafe, so its workers start as fresh interpreters."""

from __future__ import annotations

import threading

import mieruka

app = mieruka.App("threaded at import", workers=1)
_started = threading.Event()
threading.Thread(target=_started.wait, name="started-at-import", daemon=True).start()


@app.task
def double(x: int) -> int:
    return 2 * x
