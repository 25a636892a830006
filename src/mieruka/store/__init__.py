"""Job stores: where job records, logs, artifacts' metadata, schedules and server liveness live.

`base` holds the interface; `sql` the implementation for SQLite and PostgreSQL, one module per
concern on one `database.Database` (imported only where needed, so that worker processes do not
pay for SQLAlchemy); `tables` declares every column once and `codec` reads them."""
