"""The Alembic migrations build exactly the schema of mieruka/store/tables.py, on every backend."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from mieruka.store.base import JobQuery
from mieruka.store.migrate import MIGRATIONS, alembic_config, current_revision
from mieruka.store.sql import SqlJobStore
from mieruka.store.tables import metadata
from tests.conftest import BACKENDS, free_port, fresh_postgres_database

TESTS = Path(__file__).parents[1]


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it, not even the alembic_version table."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty' / 'mieruka.db'}"
        return
    with fresh_postgres_database("mieruka_migr") as url:
        yield url


@pytest.fixture
def migrated(empty_database_url: str) -> Iterator[sa.Engine]:
    """An engine on an empty database upgraded by `SqlJobStore.migrate()`."""
    database_url = empty_database_url
    engine = sa.create_engine(database_url) if not database_url.startswith("sqlite") else None
    if engine is not None:
        assert sa.inspect(engine).get_table_names() == []
        engine.dispose()
    store = SqlJobStore(database_url)
    store.migrate()
    store.close()
    engine = sa.create_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


# alembic types its diffs Any: each is a tuple, or a list of tuples for a changed column
def schema_diff(engine: sa.Engine, target: sa.MetaData = metadata) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, target))


def head_revision() -> str:
    heads = ScriptDirectory(str(MIGRATIONS)).get_heads()
    assert len(heads) == 1, f"the migrations have several heads: {heads}"
    return heads[0]


def test_migrations_match_the_table_definitions(migrated: sa.Engine) -> None:
    assert schema_diff(migrated) == []


def test_the_comparison_sees_differences(migrated: sa.Engine) -> None:
    """Guard against a vacuous check: a table, a column and an index missing from the database
    are all reported."""
    target = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(target)
    sa.Table("extra_table", target, sa.Column("id", sa.Integer, primary_key=True))
    jobs = target.tables["jobs"]
    jobs.append_column(sa.Column("extra_column", sa.Integer))
    sa.Index("ix_jobs_extra", jobs.c.queue)
    kinds = {diff[0] if isinstance(diff, tuple) else diff[0][0] for diff in schema_diff(migrated, target)}
    assert {"add_table", "add_column", "add_index"} <= kinds


def test_every_table_and_index_exists(migrated: sa.Engine) -> None:
    inspector = sa.inspect(migrated)
    tables = set(inspector.get_table_names())
    assert set(metadata.tables) <= tables
    indexes = {ix["name"] for ix in inspector.get_indexes("jobs")}
    assert {"ix_jobs_active", "ix_jobs_task", "ix_jobs_owner", "ix_jobs_owner_key", "ix_jobs_open_key"} <= indexes
    assert "ix_jobs_idempotency_key" not in indexes  # keys are per owner and task since 0005
    unique = {ix["name"]: ix["unique"] for ix in inspector.get_indexes("jobs")}
    assert unique["ix_jobs_owner_key"] and unique["ix_jobs_open_key"]
    assert [ix["name"] for ix in inspector.get_indexes("job_uploads")] == ["ix_job_uploads_upload"]


def test_partial_indexes_are_partial(migrated: sa.Engine) -> None:
    """The partial indexes of tables.py keep their WHERE clause in the database."""
    if migrated.dialect.name == "sqlite":
        with migrated.connect() as conn:
            sql: dict[str, str] = dict(
                conn.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'"
                ).all()
            )
    else:
        with migrated.connect() as conn:
            sql = dict(
                conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobs'").all()
            )
    assert "where" in sql["ix_jobs_active"].lower()
    assert "where" in sql["ix_jobs_owner"].lower()
    assert "owner is not null" in sql["ix_jobs_owner_key"].lower()
    assert "owner is null" in sql["ix_jobs_open_key"].lower()
    assert "where" not in sql["ix_jobs_task"].lower()


def test_migrate_reaches_head_and_twice_is_a_no_op(empty_database_url: str, migrated: sa.Engine) -> None:
    database_url = empty_database_url
    assert current_revision(migrated) == head_revision()
    with migrated.connect() as conn:
        before = {name: sorted(map(str, sa.inspect(conn).get_columns(name))) for name in metadata.tables}
    store = SqlJobStore(database_url)
    try:
        store.migrate()
        store.migrate()
    finally:
        store.close()
    assert current_revision(migrated) == head_revision()
    with migrated.connect() as conn:
        after = {name: sorted(map(str, sa.inspect(conn).get_columns(name))) for name in metadata.tables}
        versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    assert after == before
    assert versions == [head_revision()]
    assert schema_diff(migrated) == []


def test_migrate_keeps_data(empty_database_url: str, migrated: sa.Engine) -> None:
    from mieruka.store.base import NewJob

    database_url = empty_database_url
    store = SqlJobStore(database_url)
    try:
        job, _ = store.create_job(NewJob(task="t", params={"x": 1}))
        store.migrate()
        assert store.get_job(job.id) == job
    finally:
        store.close()


def test_upgrading_keeps_idempotency_keys_and_records_the_uploads_of_existing_jobs(empty_database_url: str) -> None:
    """0005_upload_owners on a database with jobs: their keys still find them, now per owner and
    task; the uploads they name are their oldest job's owner's, and go with their last job."""
    from mieruka.core.clock import utcnow
    from mieruka.store.base import ForeignUploads, NewJob
    from mieruka.store.migrate import upgrade
    from mieruka.store.sql import make_engine
    from mieruka.store.tables import jobs

    engine = make_engine(empty_database_url, immediate=False)
    upgrade(engine, "0004_auth")

    def ref(upload_id: str) -> dict[str, object]:
        return {"upload_id": upload_id, "filename": "a.txt", "size": 1, "content_type": "text/plain"}

    rows = [  # (owner, key, params)
        ("alice", "k1", {"document": ref("u1")}),
        ("bob", "k2", {"document": ref("u1")}),  # named before uploads had owners
        (None, "k3", {"document": ref("u2"), "extra": [ref("u3"), ref("u2")], "note": "upload_id"}),
        ("alice", None, {"document": ref("../etc"), "text": {"upload_id": "u9"}}),  # no uploads
        ("carol", None, {"a": 1}),
    ]
    with engine.begin() as conn:
        for owner, key, params in rows:
            conn.execute(
                sa.insert(jobs).values(
                    task="t",
                    status="succeeded",
                    params=params,
                    owner=owner,
                    idempotency_key=key,
                    created_at=utcnow(),
                    finished_at=utcnow(),
                )
            )
    engine.dispose()
    store = SqlJobStore(empty_database_url)
    try:
        store.migrate()
        old = {job.idempotency_key: job for job in store.list_jobs(JobQuery()) if job.idempotency_key}
        for owner, key in (("alice", "k1"), ("bob", "k2"), (None, "k3")):
            again, created = store.create_job(NewJob(task="t", params={}, owner=owner, idempotency_key=key))
            assert (again.id, created) == (old[key].id, False)
        other, created = store.create_job(NewJob(task="t", params={}, owner="bob", idempotency_key="k1"))
        assert created and other.id not in {job.id for job in old.values()}
        with pytest.raises(ForeignUploads):
            store.create_job(NewJob(task="t", params={}, owner="bob", uploads=("u2",)))
        assert store.create_job(NewJob(task="t", params={}, uploads=("u3",)))[1]  # the open mode's own
        assert store.delete_job(old["k1"].id).uploads == []  # bob's job still reads u1
        assert store.delete_job(old["k2"].id).uploads == ["u1"]
        with pytest.raises(ForeignUploads):
            store.create_job(NewJob(task="t", params={}, owner="bob", uploads=("u1",)))  # alice's
        assert store.delete_job(old["k3"].id).uploads == ["u2"]  # u3: a newer job reads it
    finally:
        store.close()


def test_a_new_sqlite_database_is_the_snapshot_of_what_the_migrations_make(tmp_path: Path) -> None:
    from mieruka.store import snapshot
    from mieruka.store.migrate import sqlite_snapshot

    again = "`python -m mieruka.store.migrate` writes it again"
    assert snapshot.revision() == head_revision(), f"the SQLite snapshot is not at the newest migration: {again}"
    made = sqlite_snapshot()
    assert snapshot.SCRIPT.read_text(encoding="utf-8") == made, (
        f"the SQLite snapshot differs from the migrations: {again}"
    )
    database = tmp_path / "new.db"
    code = (
        "import sys; from mieruka.store.sql import SqlJobStore; s = SqlJobStore(sys.argv[1]); s.migrate(); s.close(); "
        "print('alembic' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, f"sqlite:///{database}"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", "a new SQLite database was migrated by Alembic, not from the snapshot"
    assert snapshot.dump(database) == made
    store = SqlJobStore(f"sqlite:///{database}")
    store.migrate()  # at head: nothing to do
    store.close()
    assert snapshot.dump(database) == made


def test_alembic_config_points_at_the_migrations(migrated: sa.Engine) -> None:
    config = alembic_config(migrated)
    assert Path(config.get_main_option("script_location") or "") == MIGRATIONS
    assert config.attributes["engine"] is migrated
    assert (MIGRATIONS / "env.py").is_file()


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS.parent / "src"), env.get("PYTHONPATH")) if p)
    return env


def test_cli_db_upgrade_creates_the_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "mieruka.cli", "db", "upgrade", "--home", str(home)],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout
    db = home / "mieruka.db"
    assert db.is_file()
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        assert current_revision(engine) == head_revision()
        assert schema_diff(engine) == []
    finally:
        engine.dispose()
    again = subprocess.run(
        [sys.executable, "-m", "mieruka.cli", "db", "upgrade", "--home", str(home)],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stdout + again.stderr


def test_cli_db_upgrade_with_database_url(tmp_path: Path, empty_database_url: str) -> None:
    database_url = empty_database_url
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mieruka.cli",
            "db",
            "upgrade",
            "--home",
            str(tmp_path / "h"),
            "--database-url",
            database_url,
        ],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    engine = sa.create_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
        assert schema_diff(engine) == []
    finally:
        engine.dispose()


def test_cli_db_upgrade_bad_url_is_one_readable_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mieruka.cli",
            "db",
            "upgrade",
            "--home",
            str(tmp_path / "h"),
            "--database-url",
            "nosuchdb://x",
        ],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("mieruka: ")
    assert "Traceback" not in result.stderr


def test_processes_migrating_a_fresh_database_at_once_all_succeed(empty_database_url: str) -> None:
    """Servers and workers started together on a new database (docker compose up) each migrate."""
    import subprocess
    import sys

    code = "import sys; from mieruka.store.sql import SqlJobStore; s = SqlJobStore(sys.argv[1]); s.migrate(); s.close()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, empty_database_url], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    engine = sa.create_engine(empty_database_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_a_database_a_newer_mieruka_made_is_refused_in_one_line_and_left_alone(
    empty_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir(exist_ok=True)
    engine = sa.create_engine(empty_database_url)
    try:
        command.upgrade(alembic_config(engine), "head")
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
        for args in (["db", "upgrade"], ["run", "tests/jobs.py:app", "--port", str(free_port())]):
            result = subprocess.run(
                [sys.executable, "-m", "mieruka.cli", *args, "--home", str(tmp_path / "home")]
                + ["--database-url", empty_database_url],
                cwd=Path(__file__).resolve().parents[2],
                env=_clean_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 1, result.stdout + result.stderr
            assert "Traceback" not in result.stderr, result.stderr
            (line,) = [line for line in result.stderr.splitlines() if line.startswith("mieruka: ")]
            assert "'9999_from_the_future'" in line and "newer mieruka" in line, line
        with engine.connect() as conn:
            assert (
                conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "9999_from_the_future"
            )
    finally:
        engine.dispose()
