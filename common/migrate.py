"""A small migration runner: applies db/migrations/V<NNN>__<name>.sql in order, once each.

Applied versions are recorded in public.schema_migrations with a checksum; an applied file that
changed afterwards is an error (write a new migration instead). Each migration runs in its own
transaction as the admin role. Role passwords are set from settings after the migrations, so no
secret is ever in a SQL file.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from psycopg2 import sql

from common.db import connect
from common.settings import PROJECT_ROOT, PostgresSettings, postgres_settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = PROJECT_ROOT / "db" / "migrations"
_NAME = re.compile(r"^V(\d{3,})__([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"migration file {path.name} is not named V<NNN>__<name>.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version in {directory}")
    return found


def ensure_database(settings: PostgresSettings) -> None:
    """Create the pipeline database if it does not exist (connected to the maintenance db)."""
    conn = connect("admin", settings, database="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (settings.database,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("create database {}").format(sql.Identifier(settings.database)))
                log.info("created database %s", settings.database)
    finally:
        conn.close()


def migrate(settings: PostgresSettings | None = None, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied. Idempotent."""
    s = settings or postgres_settings()
    ensure_database(s)
    applied_now: list[str] = []
    conn = connect("admin", s)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                """
                create table if not exists public.schema_migrations (
                    version    integer primary key,
                    name       text not null,
                    checksum   text not null,
                    applied_at timestamptz not null default now()
                )
                """
            )
            cur.execute("select version, checksum from public.schema_migrations")
            applied = dict(cur.fetchall())
        for mig in discover(directory):
            if mig.version in applied:
                if applied[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"migration V{mig.version:03d}__{mig.name} changed after it was applied; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            with conn, conn.cursor() as cur:
                cur.execute("select pg_advisory_xact_lock(727272)")
                cur.execute("select 1 from public.schema_migrations where version = %s", (mig.version,))
                if cur.fetchone():
                    continue
                cur.execute(mig.sql)
                cur.execute(
                    "insert into public.schema_migrations (version, name, checksum) values (%s, %s, %s)",
                    (mig.version, mig.name, mig.checksum),
                )
            applied_now.append(f"V{mig.version:03d}__{mig.name}")
            log.info("applied migration V%03d__%s", mig.version, mig.name)
        set_role_passwords(conn, s)
    finally:
        conn.close()
    return applied_now


def set_role_passwords(conn, settings: PostgresSettings) -> None:
    """Give the writer and reader roles their passwords from settings (never from SQL files)."""
    with conn, conn.cursor() as cur:
        for user, secret in (
            (settings.writer_user, settings.writer_password),
            (settings.reader_user, settings.reader_password),
        ):
            password = secret.get_secret_value()
            if not password:
                raise MigrationError(f"no password set for role {user}: set it in .env (see .env.example)")
            cur.execute(sql.SQL("alter role {} password %s").format(sql.Identifier(user)), (password,))


def drop_database(settings: PostgresSettings) -> None:
    """Drop `settings.database` if it exists, ending its sessions (for tests and benchmarks)."""
    conn = connect("admin", settings, database="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(settings.database))
            )
    finally:
        conn.close()


def recreate_database(name: str, settings: PostgresSettings | None = None) -> PostgresSettings:
    """A fresh database `name` with every migration applied; returns settings pointing at it."""
    fresh = (settings or postgres_settings()).model_copy(update={"database": name})
    drop_database(fresh)
    migrate(fresh)
    return fresh
