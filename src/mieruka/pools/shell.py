"""A pool started and stopped by shell commands (systemctl, docker compose, a cloud CLI, ...)."""

from __future__ import annotations

import subprocess

from ..settings import child_environment
from .base import PoolSpec


class ShellCommand:
    """`start` and `stop` run with /bin/sh; the environment adds MIERUKA_POOL (the pool's name),
    MIERUKA_POOL_QUEUES (comma-separated) and MIERUKA_APP (the app reference), and the MIERUKA_*
    settings a worker needs. A non-zero exit fails the start or stop with the command's last output."""

    def __init__(self, start: str, stop: str, timeout: float = 600.0) -> None:
        self.start_command = start
        self.stop_command = stop
        self.timeout = timeout

    def start(self, pool: PoolSpec) -> None:
        self._run(self.start_command, pool)

    def stop(self, pool: PoolSpec) -> None:
        self._run(self.stop_command, pool)

    def _run(self, command: str, pool: PoolSpec) -> None:
        env = child_environment(
            {
                **pool.env,
                "MIERUKA_POOL": pool.name,
                "MIERUKA_POOL_QUEUES": ",".join(pool.queues),
                "MIERUKA_APP": pool.app_ref,
            }
        )
        try:
            done = subprocess.run(
                command,
                shell=True,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{command!r} did not finish within {self.timeout:g}s") from None
        if done.returncode != 0:
            output = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise RuntimeError(f"{command!r} exited with {done.returncode}" + (f": {output[-1]}" if output else ""))

    def __repr__(self) -> str:
        return f"ShellCommand(start={self.start_command!r}, stop={self.stop_command!r})"
