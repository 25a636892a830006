"""Alembic environment: uses the engine handed over by mieruka.store.migrate."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from mieruka.store.tables import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    engine = engine_from_config(config.get_section(config.config_ini_section) or {},
                                prefix="sqlalchemy.", poolclass=pool.NullPool)

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    context.run_migrations()
