"""Job stores: where job records, logs, artifacts' metadata, schedules and server liveness live.

`base` holds the interface; `sql` the SQLAlchemy implementation (imported only where needed, so
that worker processes do not pay for SQLAlchemy)."""
