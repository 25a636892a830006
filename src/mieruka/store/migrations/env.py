"""Alembic environment: uses the engine handed over by mieruka.store.migrate."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from mieruka.store.tables import metadata, on_postgresql

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {}, prefix="sqlalchemy.", poolclass=pool.NullPool
    )

with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        on_postgresql()
        # Servers and workers started together on a fresh database (docker compose up) all
        # migrate at start-up: one at a time, the others then find the schema up to date.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('mieruka-migrations'))")
    context.configure(
        connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite"
    )
    context.run_migrations()
