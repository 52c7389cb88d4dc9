"""Alembic environment: uses the engine from `sync.store.db` (or sqlalchemy.url) and SQLModel's metadata."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import sync.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from sync.store.db import make_engine

OUR_TABLES = set(SQLModel.metadata.tables)


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    return type_ != "table" or name in OUR_TABLES


def run_migrations_online() -> None:
    config = context.config
    engine = config.attributes.get("engine") or make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=SQLModel.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            include_name=_include_name,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
