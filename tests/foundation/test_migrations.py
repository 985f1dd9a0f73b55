"""The migration runner applies each file once and refuses edited history."""

from __future__ import annotations

import shutil

import pytest

from common.db import connect
from common.migrate import MIGRATIONS_DIR, MigrationError, discover, drop_database, migrate
from common.settings import postgres_settings

TEST_DB = "market_migrations_test"


@pytest.fixture
def fresh_db(stack):
    settings = postgres_settings().model_copy(update={"database": TEST_DB})
    drop_database(settings)
    yield settings
    drop_database(settings)


def test_migrations_apply_once_in_order_and_a_second_run_applies_nothing(fresh_db):
    applied = migrate(fresh_db)
    assert applied == [f"V{m.version:03d}__{m.name}" for m in discover()]
    assert migrate(fresh_db) == []
    conn = connect("admin", fresh_db)
    with conn.cursor() as cur:
        cur.execute("select version from public.schema_migrations order by version")
        assert [r[0] for r in cur.fetchall()] == [m.version for m in discover()]
    conn.close()


def test_an_applied_migration_that_was_edited_is_refused(fresh_db, tmp_path):
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy)
    migrate(fresh_db, copy)
    first = sorted(copy.glob("V*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited later\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(fresh_db, copy)


def test_a_badly_named_migration_file_is_refused(tmp_path):
    (tmp_path / "001_init.sql").write_text("select 1;")
    with pytest.raises(MigrationError, match=r"V<NNN>__<name>\.sql"):
        discover(tmp_path)
