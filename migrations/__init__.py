"""Alembic environment and revisions for the `sync` tables (same migrations for SQLite and PostgreSQL)."""
