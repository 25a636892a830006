"""The engine: accepts jobs, hands them to the executor, records what happens, recovers from crashes.

- `api.py`: the `Engine` (submit, cancel, retry, delete, wait, ...), callable from any thread;
- `states.py`: the one way the engine changes a job's state: write, then tell;
- `dispatch.py`: how queued jobs reach workers, behind one small interface: claimed here and run by
  the local executor's workers, or sent to a broker whose workers claim them (Celery);
- `loop.py`: the loop thread that owns dispatching and every write caused by workers;
- `upkeep.py`: recovery of jobs whose server or worker died, schedules, retention;
- `waiting.py`: waiting for a job to end, woken by its end event.
"""

from .api import Engine

__all__ = ["Engine"]
