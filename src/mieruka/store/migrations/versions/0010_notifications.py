"""Notifications: rules, the outbox of events, messages and which events each carries; triggers that
write a job's or a pool's event in the transaction that changes it (see notify/outbox.py).

Revision ID: 0010_notifications
Revises: 0009_user_sources
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from mieruka.store.tables import UTCDateTime

revision = "0010_notifications"
down_revision = "0009_user_sources"
branch_labels = None
depends_on = None

# A job's end (failed, succeeded), its last retry queued, a pool started or stopped: an event row in
# the same transaction as the change, when an enabled rule asks for that kind of event (else nothing
# is written: no rules, no cost beyond one look at a small table). The key makes it one event however
# often the row is written (an attempt ends once).
_NOW_SQLITE = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"
_WANTED_SQLITE = "EXISTS (SELECT 1 FROM notify_rules WHERE enabled AND instr(events, ',' || {kind} || ',') > 0)"
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER notify_job_end AFTER UPDATE OF status ON jobs
    WHEN NEW.status IN ('failed', 'succeeded') AND OLD.status <> NEW.status
     AND {_WANTED_SQLITE.format(kind="'job.' || NEW.status")}
    BEGIN
      INSERT OR IGNORE INTO notify_events (kind, key, at, job_id, task, subject, message, routed)
      VALUES ('job.' || NEW.status, 'job.' || NEW.status || ':' || NEW.id || ':' || NEW.attempts, {_NOW_SQLITE},
              NEW.id, NEW.task, NEW.task, substr(NEW.error, 1, 2000), 0);
    END""",
    f"""CREATE TRIGGER notify_job_retry AFTER UPDATE OF status ON jobs
    WHEN NEW.status = 'queued' AND OLD.status = 'running' AND NEW.attempts + 1 = NEW.max_attempts
     AND {_WANTED_SQLITE.format(kind="'job.last_retry'")}
    BEGIN
      INSERT OR IGNORE INTO notify_events (kind, key, at, job_id, task, subject, message, routed)
      VALUES ('job.last_retry', 'job.last_retry:' || NEW.id || ':' || NEW.attempts, {_NOW_SQLITE},
              NEW.id, NEW.task, NEW.task, substr(NEW.error, 1, 2000), 0);
    END""",
    f"""CREATE TRIGGER notify_pool AFTER INSERT ON pool_events
    WHEN NEW.from_state IS NOT NULL AND NEW.to_state IN ('running', 'stopped')
     AND {_WANTED_SQLITE.format(kind="CASE NEW.to_state WHEN 'running' THEN 'pool.started' ELSE 'pool.stopped' END")}
    BEGIN
      INSERT OR IGNORE INTO notify_events (kind, key, at, subject, message, routed)
      VALUES (CASE NEW.to_state WHEN 'running' THEN 'pool.started' ELSE 'pool.stopped' END, 'pool:' || NEW.id,
              {_NOW_SQLITE}, NEW.pool, substr(NEW.reason, 1, 2000), 0);
    END""",
]
_WANTED_PG = "EXISTS (SELECT 1 FROM notify_rules WHERE enabled AND position(',' || kind || ',' in events) > 0)"
POSTGRES_TRIGGERS = [
    f"""CREATE FUNCTION mieruka_notify_job() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE kind text;
    BEGIN
      IF NEW.status IN ('failed', 'succeeded') THEN
        kind := 'job.' || NEW.status;
      ELSIF NEW.status = 'queued' AND OLD.status = 'running' AND NEW.attempts + 1 = NEW.max_attempts THEN
        kind := 'job.last_retry';
      ELSE
        RETURN NULL;
      END IF;
      IF {_WANTED_PG} THEN
        INSERT INTO notify_events (kind, key, at, job_id, task, subject, message, routed)
        VALUES (kind, kind || ':' || NEW.id || ':' || NEW.attempts, now() AT TIME ZONE 'UTC', NEW.id, NEW.task,
                NEW.task, left(NEW.error, 2000), false)
        ON CONFLICT (key) DO NOTHING;
      END IF;
      RETURN NULL;
    END $$""",
    """CREATE TRIGGER notify_job AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION mieruka_notify_job()""",
    f"""CREATE FUNCTION mieruka_notify_pool() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE kind text;
    BEGIN
      kind := CASE NEW.to_state WHEN 'running' THEN 'pool.started' ELSE 'pool.stopped' END;
      IF {_WANTED_PG} THEN
        INSERT INTO notify_events (kind, key, at, subject, message, routed)
        VALUES (kind, 'pool:' || NEW.id, now() AT TIME ZONE 'UTC', NEW.pool, left(NEW.reason, 2000), false)
        ON CONFLICT (key) DO NOTHING;
      END IF;
      RETURN NULL;
    END $$""",
    """CREATE TRIGGER notify_pool AFTER INSERT ON pool_events FOR EACH ROW
    WHEN (NEW.from_state IS NOT NULL AND NEW.to_state IN ('running', 'stopped'))
    EXECUTE FUNCTION mieruka_notify_pool()""",
]


def upgrade() -> None:
    op.create_table(
        "notify_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(100)),
        sa.Column("events", sa.String(500), nullable=False),
        sa.Column("scope", sa.JSON, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("secret", sa.String(200)),
        sa.Column("longer_than", sa.Float),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "notify_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(300), nullable=False, unique=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("job_id", sa.Integer),
        sa.Column("task", sa.String(200)),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("routed", sa.Boolean, nullable=False, server_default=sa.false()),
        sqlite_autoincrement=True,
    )
    unrouted = sa.text("NOT routed")
    op.create_index(
        "ix_notify_events_unrouted", "notify_events", ["id"], sqlite_where=unrouted, postgresql_where=unrouted
    )
    op.create_table(
        "notify_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule_id", sa.Integer, sa.ForeignKey("notify_rules.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("test", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("events", sa.Integer, nullable=False, server_default="0"),
        sa.Column("sent_at", UTCDateTime()),
        sa.Column("last_error", sa.Text),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_notify_deliveries_rule", "notify_deliveries", ["rule_id", "id"])
    op.create_index("ix_notify_deliveries_status", "notify_deliveries", ["status", "due_at"])
    op.create_table(
        "notify_items",
        sa.Column("rule_id", sa.Integer, sa.ForeignKey("notify_rules.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("notify_events.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("delivery_id", sa.Integer, sa.ForeignKey("notify_deliveries.id", ondelete="CASCADE"), nullable=False),
    )
    op.create_index("ix_notify_items_delivery", "notify_items", ["delivery_id"])
    for statement in SQLITE_TRIGGERS if op.get_bind().dialect.name == "sqlite" else POSTGRES_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name, table in (("notify_job", "jobs"), ("notify_pool", "pool_events")):
        if sqlite:
            for suffix in ("_end", "_retry", ""):
                op.execute(f"DROP TRIGGER IF EXISTS {name}{suffix}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS mieruka_{name}()")
    for table in ("notify_items", "notify_deliveries", "notify_events", "notify_rules"):
        op.drop_table(table)
