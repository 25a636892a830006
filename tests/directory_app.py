"""An app for directory login tests (tests/servers/test_ldap.py): a task anyone may run and one only
the members of the directory group lab-ops may see and run (allow=["group:lab-ops"])."""

from __future__ import annotations

import mieruka

app = mieruka.App("directory", workers=1)


@app.task
def hello(name: str = "world") -> str:
    return f"hello {name}"


@app.task(allow=["group:lab-ops"])
def calibrate(level: int = 1) -> int:
    return level * 2
