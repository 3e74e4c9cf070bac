"""Alembic environment: online migrations against the URL set by records.migrations.config."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from records.models import Base

target_metadata = Base.metadata
url = context.config.get_main_option("sqlalchemy.url")
assert url, "records.migrations.config sets sqlalchemy.url"

connectable = create_engine(url, poolclass=pool.NullPool)
with connectable.connect() as connection:
    # One transaction per migration: on MySQL DDL commits at once, so the version must move with each step
    # (an upgrade refused half-way then resumes where it stopped).
    context.configure(connection=connection, target_metadata=target_metadata, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
