"""The worker side's processes started as fresh interpreters, which import the app by its
reference: the zygote where it cannot be forked from the app's own process, and a local worker
where no zygote can be. Only these import `mieruka.app` (through the loader): the zygote and the
workers forked from the app's process find it in memory, so the app can fork them itself."""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import TYPE_CHECKING

from .. import worker_mode
from . import local_worker, zygote_process

if TYPE_CHECKING:
    from ..app import App


def load(app_ref: str) -> App:
    """The app, imported as a worker imports it (its module's `app.serve()` does nothing here)."""
    from ..loader import load_app

    worker_mode.IN_WORKER = True
    return load_app(app_ref)


def worker() -> None:
    """A local worker: `python -c "from mieruka.executors.fresh import worker; worker()" CONFIG`."""
    config = json.loads(sys.argv[-1])
    sys.path[:] = config["sys_path"]
    os.set_inheritable(config["fd"], False)  # jobs' child processes must not hold our pipe
    channel = local_worker.Channel(socket.socket(fileno=config["fd"]))
    local_worker.worker_main(channel, config, lambda: load(config["app"]))


def zygote() -> None:
    """The zygote: `python -c "from mieruka.executors.fresh import zygote; zygote()" CONFIG`."""
    zygote_process.main(load)
