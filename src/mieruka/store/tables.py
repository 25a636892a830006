"""SQLAlchemy table definitions (store/codec.py declares the jobs columns the hot path reads, and a
test checks them against these). The Alembic migrations in migrations/versions/ must match these;
tests/servers/test_migrations.py checks that they do."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from .codec import ACTIVE as codec_active
from .codec import MAX_INT as MAX_INT  # kept in codec.py, which needs no SQLAlchemy
from .codec import time_in, time_out


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC, on every backend (time_in, time_out)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return time_in(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return time_out(value)


metadata = sa.MetaData()
ACTIVE = sa.text(codec_active)
_HAS_OWNER = sa.text("owner IS NOT NULL")
# Idempotency keys are per owner and task. NULLs are distinct in a unique index, so jobs without
# an owner (the open single-user mode) have an index of their own.
_OWNED_KEY = sa.text("idempotency_key IS NOT NULL AND owner IS NOT NULL")
_OPEN_KEY = sa.text("idempotency_key IS NOT NULL AND owner IS NULL")
_HAS_STEP = sa.text("step IS NOT NULL")
# The partial indexes' conditions on PostgreSQL are given when a database there is opened
# (`on_postgresql`): naming them here would load SQLAlchemy's PostgreSQL dialect, 30 modules, into
# every process on SQLite.
_PARTIAL: list[tuple[sa.Index, sa.TextClause]] = []


def _partial(name: str, *columns: str, where: sa.TextClause, unique: bool = False) -> sa.Index:
    index = sa.Index(name, *columns, unique=unique, sqlite_where=where)
    _PARTIAL.append((index, where))
    return index


def on_postgresql() -> None:
    """Give the partial indexes their PostgreSQL conditions (before any schema is made or compared there)."""
    for index, where in _PARTIAL:
        index.dialect_options["postgresql"]["where"] = where


jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("owner", sa.String(200)),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("queue", sa.String(100), nullable=False, server_default="default"),
    sa.Column("idempotency_key", sa.String(200)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("run_after", UTCDateTime()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("finished_at", UTCDateTime()),
    sa.Column("progress", sa.Float),
    sa.Column("message", sa.Text),
    sa.Column("result", sa.JSON),
    sa.Column("error", sa.Text),
    sa.Column("traceback", sa.Text),
    sa.Column("worker", sa.String(200)),
    sa.Column("engine_id", sa.String(64)),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("log_lines", sa.Integer, nullable=False, server_default="0"),
    sa.Column("schedule", sa.String(200)),
    # Partial indexes: each write touches as few index pages as possible (a job is written three
    # times in its life); finished jobs leave the "active" index.
    _partial("ix_jobs_active", "status", "priority", "id", where=ACTIVE),
    sa.Index("ix_jobs_task", "task", "id"),
    sa.Index("ix_jobs_finished_at", "finished_at"),  # the monitoring charts: the last hour's jobs
    _partial("ix_jobs_owner", "owner", where=_HAS_OWNER),
    _partial("ix_jobs_owner_key", "owner", "task", "idempotency_key", unique=True, where=_OWNED_KEY),
    _partial("ix_jobs_open_key", "task", "idempotency_key", unique=True, where=_OPEN_KEY),
    # Never reuse a deleted job's id: its URL and files belong to it.
    sqlite_autoincrement=True,
)

job_logs = sa.Table(
    "job_logs",
    metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("stream", sa.String(8), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("step", sa.String(200)),
    # Only pipeline jobs' lines carry a step: ordinary jobs' log writes touch no extra index.
    _partial("ix_job_logs_step", "job_id", "step", "seq", where=_HAS_STEP),
)

job_steps = sa.Table(
    "job_steps",
    metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("depends_on", sa.JSON, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("allow_failure", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("parent", sa.String(200)),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("finished_at", UTCDateTime()),
    sa.Column("progress", sa.Float),
    sa.Column("message", sa.Text),
    sa.Column("output", sa.JSON),
    sa.Column("error", sa.Text),
    sa.Column("artifacts", sa.JSON, nullable=False),
    sa.Column("reused", sa.Boolean, nullable=False, server_default=sa.false()),
)

# Uploaded files (File parameters): an upload belongs to whoever first submitted a job with it,
# and only that owner's jobs may name it; its file is deleted with the last job that names it
# (migration 0005_upload_owners).
uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("upload_id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(200)),  # None: the open single-user mode's
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

job_uploads = sa.Table(
    "job_uploads",
    metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("upload_id", sa.String(64), sa.ForeignKey("uploads.upload_id"), primary_key=True),
    sa.Index("ix_job_uploads_upload", "upload_id"),
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("content_type", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

engines = sa.Table(
    "engines",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    # What the process is, for the monitoring page: kind (server, celery), name, queues, concurrency.
    sa.Column("info", sa.JSON),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("next_run_at", UTCDateTime(), nullable=False),
    sa.Column("last_run_at", UTCDateTime()),
    sa.Column("last_job_id", sa.Integer),
)

# -- accounts, audit log and presence (migration 0004_auth) --------------------------------------
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # 0009_user_sources: local | ldap | oidc | proxy; the directory's groups at the last login and
    # when the source last confirmed the user (None for local users).
    sa.Column("source", sa.String(16), nullable=False, server_default="local"),
    sa.Column("groups", sa.JSON),
    sa.Column("synced_at", UTCDateTime()),
    sa.Column("display_name", sa.String(200)),
    # 0012_user_language: the user's own language for the pages (none: the browser's, the server's).
    sa.Column("language", sa.String(16)),
)

# API tokens and one-time login links: only a SHA-256 of the secret is kept (the secrets are
# long and random, so a slow hash would add nothing but latency to every API call).
tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("hint", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime()),
    sa.Column("last_used_at", UTCDateTime()),
    sa.Column("revoked_at", UTCDateTime()),
    sa.Index("ix_tokens_user", "user_id"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("address", sa.String(64)),
    sa.Index("ix_sessions_user", "user_id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target", sa.String(300), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("detail", sa.JSON),
    sa.Index("ix_audit_log_action", "action", "at"),
    sa.Index("ix_audit_log_actor", "actor", "at"),
    sqlite_autoincrement=True,
)

presence = sa.Table(
    "presence",
    metadata,
    sa.Column("user_name", sa.String(100), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("page", sa.String(300), nullable=False),
)

# Compute pools started on demand (see pools/): their state now, and every change of it.
pools = sa.Table(
    "pools",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("changed_at", UTCDateTime(), nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("busy_at", UTCDateTime()),  # last time the pool had work (or someone online)
)

pool_events = sa.Table(
    "pool_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pool", sa.String(200), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("from_state", sa.String(16)),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_pool_events_pool", "pool", "id"),
)

# Password checks under way: each is reserved here, under a lock, before the password is verified,
# and goes when its outcome is in the audit log (see auth.accounts.Throttle).
login_attempts = sa.Table(
    "login_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
)

# The recent points of each stream, saved by the server every second in batches, so that a
# restarted server (and the pages it serves) shows the last window (see live.history). `epoch` names
# a numbering of the points: a restored stream keeps it and continues the sequence numbers.
stream_batches = sa.Table(
    "stream_batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("stream", sa.String(200), nullable=False),
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("saved_at", UTCDateTime(), nullable=False),
    sa.Column("points", sa.JSON, nullable=False),  # {"t": [...], "series": {name: [...]}}
    sa.Index("ix_stream_batches_stream", "stream", "id"),
)

# Display links (wall screens): a secret URL that shows one dashboard without a login, until revoked
# or expired. Only a SHA-256 of the secret is kept, as for tokens (see auth.displays).
display_links = sa.Table(
    "display_links",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dashboard", sa.String(100), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime()),
    sa.Column("last_used_at", UTCDateTime()),
    sa.Column("revoked_at", UTCDateTime()),
)

# Single sign-on (migration 0011_sso_subjects): the account at a provider (its `sub`) each user was
# first signed in as there; one per user and provider (auth/oidc_subjects.py).
sso_subjects = sa.Table(
    "sso_subjects",
    metadata,
    sa.Column("provider", sa.String(40), primary_key=True),
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("provider", "user_id", name="uq_sso_subjects_user"),
)

# Notifications (see notify/): the rules, the outbox of what happened (written in the transaction that
# records it, by triggers of migration 0010 for jobs and pools), each rule's messages, and which
# events each message carries: one row per rule and event, so an event is never sent twice by a rule.
notify_rules = sa.Table(
    "notify_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("origin", sa.String(16), nullable=False),  # code, admin, user
    sa.Column("owner", sa.String(100)),  # a user's own subscription
    sa.Column("events", sa.String(500), nullable=False),  # ",job.failed,job.long," (read by the triggers)
    sa.Column("scope", sa.JSON, nullable=False),  # {"tasks": [...], "tags": [...], "pools": [...], "sources": [...]}
    sa.Column("target", sa.Text, nullable=False),  # mail:a@b, webhook:https://..., slack:..., teams:..., mattermost:...
    sa.Column("secret", sa.String(200)),  # the generic webhook's HMAC key
    sa.Column("longer_than", sa.Float),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sqlite_autoincrement=True,
)

notify_events = sa.Table(
    "notify_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("key", sa.String(300), nullable=False, unique=True),  # one event, however often it is seen
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("job_id", sa.Integer),
    sa.Column("task", sa.String(200)),
    sa.Column("subject", sa.String(200), nullable=False),  # the task, pool, source or node
    sa.Column("message", sa.Text),
    sa.Column("routed", sa.Boolean, nullable=False, server_default=sa.false()),
    _partial("ix_notify_events_unrouted", "id", where=sa.text("NOT routed")),
    sqlite_autoincrement=True,
)

notify_deliveries = sa.Table(
    "notify_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule_id", sa.Integer, sa.ForeignKey("notify_rules.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key", sa.String(64), nullable=False, unique=True),  # the idempotency key receivers see
    sa.Column("status", sa.String(16), nullable=False),  # pending, sent, failed
    sa.Column("test", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("due_at", UTCDateTime(), nullable=False),
    sa.Column("lease_until", UTCDateTime()),  # being sent by a server until then
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("events", sa.Integer, nullable=False, server_default="0"),
    sa.Column("sent_at", UTCDateTime()),
    sa.Column("last_error", sa.Text),
    sa.Index("ix_notify_deliveries_rule", "rule_id", "id"),
    sa.Index("ix_notify_deliveries_status", "status", "due_at"),
    sqlite_autoincrement=True,
)

notify_items = sa.Table(
    "notify_items",
    metadata,
    sa.Column("rule_id", sa.Integer, sa.ForeignKey("notify_rules.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("notify_events.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("delivery_id", sa.Integer, sa.ForeignKey("notify_deliveries.id", ondelete="CASCADE"), nullable=False),
    sa.Index("ix_notify_items_delivery", "delivery_id"),
)
