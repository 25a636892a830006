"""Alembic, driven from code: `mieruka db upgrade` and the start-up auto-upgrade call `upgrade`.

Alembic (with Mako and its templates) is imported only to migrate: a database already at the
newest revision is told by one query on its `alembic_version` table, against the newest revision
read from the migration files' own `revision =` lines; a new SQLite database is made from the
snapshot of what the migrations build (snapshot.py), without Alembic either.
"""

from __future__ import annotations

import re
import sqlite3
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from .._version import __version__
from ..deferred import deferred
from ..errors import ConfigError
from ..i18n import _

if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.config import Config
    from sqlalchemy.engine import Engine
else:
    sa = deferred("sqlalchemy")

MIGRATIONS = Path(__file__).with_name("migrations")
_REVISION = re.compile(r"^(down_revision|revision)\s*=\s*(None|\"[^\"]*\"|'[^']*')\s*$", re.MULTILINE)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    current = current_revision_cheaply(engine)
    if revision == "head":
        if head_revisions() == {current}:
            return
        if current is None and engine.dialect.name == "sqlite":
            from . import snapshot

            if head_revisions() == {snapshot.revision()} and snapshot.create(engine):
                return
    if current is not None and current not in known_revisions():
        raise ConfigError(
            _(
                "the database %(url)s is at schema revision %(revision)s, which this mieruka (%(version)s) "
                "does not know: a newer mieruka made it. Run that version, or point this one at another "
                "database",
                url=engine.url.render_as_string(hide_password=True),
                revision=repr(current),
                version=__version__,
            )
        )
    from alembic import command
    from alembic.util import CommandError

    try:
        command.upgrade(alembic_config(engine), revision)
    except CommandError as exc:
        raise ConfigError(
            _(
                "cannot migrate the database %(url)s: %(reason)s",
                url=engine.url.render_as_string(hide_password=True),
                reason=exc,
            )
        ) from None


def sqlite_ready(conn: sqlite3.Connection) -> bool:
    """SQLite, without SQLAlchemy: whether the database is at the newest revision, or was empty and
    now is, made from the snapshot. False: `upgrade` decides."""
    try:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.OperationalError:  # no such table: a new database, or one Alembic never touched
        from . import snapshot

        return head_revisions() == {snapshot.revision()} and snapshot.create_on(conn)
    return len(rows) == 1 and head_revisions() == {rows[0][0]}


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def current_revision_cheaply(engine: Engine) -> str | None:
    """The database's revision in one query, None when it has none (no `alembic_version` table yet,
    or several rows: then Alembic decides)."""
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    except sa.exc.DBAPIError:
        return None
    return str(rows[0]) if len(rows) == 1 else None


@cache
def _revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(the migration files' revisions, those another file revises), from their `revision =` lines."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for name, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            if value != "None":
                (revisions if name == "revision" else revised).add(value[1:-1])
    return frozenset(revisions), frozenset(revised)


def known_revisions() -> frozenset[str]:
    """Every revision of this version's migrations."""
    return _revisions()[0]


def head_revisions() -> frozenset[str]:
    """The newest revisions of the migration files: those no other file revises."""
    revisions, revised = _revisions()
    return revisions - revised


def sqlite_snapshot() -> str:
    """What the migrations (Alembic, not the snapshot) leave in an empty SQLite database: the script
    snapshot.py makes new SQLite databases with."""
    from alembic import command

    from . import snapshot

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mieruka.db"
        engine = sa.create_engine(f"sqlite:///{path}")
        try:
            command.upgrade(alembic_config(engine), "head")
        finally:
            engine.dispose()
        return snapshot.dump(path)


if __name__ == "__main__":  # python -m mieruka.store.migrate: the SQLite snapshot written again
    from . import snapshot

    snapshot.SCRIPT.write_text(sqlite_snapshot(), encoding="utf-8")
    print(f"wrote {snapshot.SCRIPT} at revision {snapshot.revision()}", file=sys.stderr)
