"""Compute pools started on demand: workers for some queues that are started when a job arrives for
them and stopped when they have been idle (and nobody is online) for a while.

    app.pool("gpu", hooks=mieruka.pools.EC2Instance("i-0123456789abcdef0"), idle_stop="15m")
"""

from .base import Pool, PoolHooks, PoolSpec, PoolState
from .ec2 import EC2Instance
from .local import LocalWorkers
from .shell import ShellCommand

__all__ = ["EC2Instance", "LocalWorkers", "Pool", "PoolHooks", "PoolSpec", "PoolState", "ShellCommand"]
