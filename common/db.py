"""PostgreSQL connections for the three roles, with one clear error when the server is unreachable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions

from common.settings import PostgresSettings, postgres_settings


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL could not be reached or refused the login."""


def connect(
    role: str = "writer", settings: PostgresSettings | None = None, database: str | None = None
) -> psycopg2.extensions.connection:
    s = settings or postgres_settings()
    try:
        return psycopg2.connect(s.dsn(role, database))
    except psycopg2.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {s.host}:{s.port}/{database or s.database} "
            f"as {role}: {first_line}"
        ) from exc


@contextmanager
def transaction(
    role: str = "writer", settings: PostgresSettings | None = None, database: str | None = None
) -> Iterator:
    """A cursor inside one transaction: committed on success, rolled back on error."""
    conn = connect(role, settings, database)
    try:
        with conn, conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def fetch_all(
    statement: str,
    params: tuple = (),
    role: str = "admin",
    settings: PostgresSettings | None = None,
    database: str | None = None,
) -> list[tuple]:
    """One statement in its own transaction; its rows (none for a statement that returns none)."""
    with transaction(role, settings, database) as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else []
