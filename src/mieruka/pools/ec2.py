"""A pool that is one AWS EC2 instance (whose boot starts `mieruka worker`, e.g. a systemd unit)."""

from __future__ import annotations

from typing import Any

from ..errors import MissingExtraError
from .base import PoolSpec


class EC2Instance:
    """Starts and stops the instance by id with boto3 and waits until it is running or stopped.
    Credentials and region come from boto3's usual chain unless given."""

    def __init__(
        self,
        instance_id: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        wait: bool = True,
        poll_seconds: float = 5.0,
    ) -> None:
        self.instance_id = instance_id
        self.region = region
        self.endpoint_url = endpoint_url
        self.wait = wait
        self.poll_seconds = poll_seconds

    def _client(self) -> Any:
        try:
            import boto3
        except ImportError:
            raise MissingExtraError("EC2 compute pools", "s3") from None
        return boto3.client("ec2", region_name=self.region, endpoint_url=self.endpoint_url)

    def start(self, pool: PoolSpec) -> None:
        client = self._client()
        client.start_instances(InstanceIds=[self.instance_id])
        if self.wait:
            client.get_waiter("instance_running").wait(
                InstanceIds=[self.instance_id], WaiterConfig={"Delay": self.poll_seconds, "MaxAttempts": 120}
            )

    def stop(self, pool: PoolSpec) -> None:
        client = self._client()
        client.stop_instances(InstanceIds=[self.instance_id])
        if self.wait:
            client.get_waiter("instance_stopped").wait(
                InstanceIds=[self.instance_id], WaiterConfig={"Delay": self.poll_seconds, "MaxAttempts": 120}
            )

    def state(self) -> str:
        """The instance's state as EC2 reports it (pending, running, stopping, stopped, ...)."""
        found = self._client().describe_instances(InstanceIds=[self.instance_id])
        return str(found["Reservations"][0]["Instances"][0]["State"]["Name"])

    def __repr__(self) -> str:
        return f"EC2Instance({self.instance_id!r})"
