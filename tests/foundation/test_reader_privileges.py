"""The read-only role is read-only by its privileges, not by a session default it may override.

Issue 15: as market_reader, `begin read write; select raw.maintain_partitions(now() + interval
'100 years')` dropped every raw.ticks partition (SECURITY DEFINER functions executable by PUBLIC).
These tests run every such attempt as market_reader inside READ WRITE transactions, in a private
database migrated from scratch with dbt's schemas built into it by a real `dbt run`, plus objects
the admin and the writer create after the migrations (covered by the default privileges only).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg2
import pytest
from psycopg2 import errorcodes
from psycopg2 import sql as pgsql

from common.db import connect
from common.migrate import drop_database, recreate_database
from common.settings import PostgresSettings
from dbt_project import sample_data
from dbt_project.runner import run_dbt

TEST_DB = "market_reader_privileges_test"
READER = "market_reader"
TICK_SYMBOL = "PRIVTICK"
# schemas dbt creates as market_writer (generate_schema_name: staging, intermediate, marts; the
# on-run-start hooks: udf, quality); all must exist for the tests to mean anything
DBT_SCHEMAS = ("staging", "intermediate", "marts", "quality", "udf")
# dbt's on-run-start hook (dbt_project/macros/ta_functions.sql) creates the TA aggregate and its step
# function and revokes them from PUBLIC and the reader on every run (no view calls them:
# fct_daily_prices reads stored columns). The reader may execute no routine of the project at all.
READER_EXECUTABLE_SCHEMAS: tuple[str, ...] = ()

# every schema that is not PostgreSQL's own
_USER_SCHEMAS = "n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_'"


@dataclass
class PrivateDb:
    settings: PostgresSettings
    tick_time: datetime

    def conn(self, role: str):
        c = connect(role, self.settings)
        c.autocommit = True
        return c

    def admin_query(self, statement: str, params: tuple = ()) -> list[tuple]:
        c = self.conn("admin")
        try:
            with c.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall()
        finally:
            c.close()


@pytest.fixture(scope="module")
def priv_db(stack, tmp_path_factory) -> Iterator[PrivateDb]:
    settings = recreate_database(TEST_DB)
    writer = connect("writer", settings)
    try:
        days = sample_data.trading_days(date.today() - timedelta(days=1), 40)
        sample_data.load_daily_bars(writer, [sample_data.daily_series("PRIVD", days, seed=1)])
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
        sample_data.load_rt_minutes(writer, "PRIVRT", start, 3, seed=2, signal_every=2)
        writer.commit()
    finally:
        writer.close()
    result = run_dbt(["run"], database=TEST_DB, target_path=tmp_path_factory.mktemp("dbt-target"))
    assert result.ok, result.stdout[-3000:]
    db = PrivateDb(settings, datetime.now(UTC).replace(microsecond=0))
    writer = db.conn("writer")
    admin = db.conn("admin")
    try:
        with writer.cursor() as cur:
            # a landed tick, as the stream sink lands it
            cur.execute("select raw.ensure_partitions('raw.ticks', %s, %s)", (db.tick_time, db.tick_time))
            cur.execute(
                "insert into raw.ticks (symbol, event_time, price, size, source, ingest_time)"
                " values (%s, %s, 10, 1, 'synthetic', now())",
                (TICK_SYMBOL, db.tick_time),
            )
            # objects made after the migrations: only the default privileges cover these
            cur.execute(
                "create function marts.later_writer_fn() returns integer language sql security definer"
                " as 'select 1'"
            )
            cur.execute("create schema later_writer_schema")
            cur.execute("create table later_writer_schema.t (x integer)")
            cur.execute(
                "create function later_writer_schema.f(x integer) returns integer language sql as 'select x'"
            )
        with admin.cursor() as cur:
            cur.execute(
                "create function raw.later_admin_fn() returns integer language sql security definer"
                " as 'select 1'"
            )
            cur.execute("create procedure rt.later_admin_proc() language sql as 'select 1'")
            cur.execute("create aggregate rt.later_admin_agg(integer) (sfunc = int4pl, stype = integer)")
    finally:
        writer.close()
        admin.close()
    yield db
    drop_database(settings)


def _sqlstate_of(conn, statement: str | pgsql.Composable) -> str | None:
    """Run `statement` alone in a READ WRITE transaction; its SQLSTATE, or None if it succeeded."""
    with conn.cursor() as cur:
        cur.execute("begin read write")
        cur.execute("show transaction_read_only")
        assert cur.fetchone()[0] == "off", (
            "the reader's transaction must be read-write for the test to mean anything"
        )
        try:
            cur.execute(statement)
            return None
        except psycopg2.Error as exc:
            return exc.pgcode
        finally:
            cur.execute("rollback")


def _routines(db: PrivateDb) -> list[tuple]:
    """Every function, procedure, aggregate and window function outside PostgreSQL's own schemas."""
    return db.admin_query(
        f"""
        select n.nspname, p.proname, p.prokind, p.provariadic <> 0,
               array(select format_type(t, null) from unnest(p.proargtypes) t),
               p.prosecdef, p.provolatile, pg_get_userbyid(p.proowner)
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where {_USER_SCHEMAS}
        order by 1, 2
        """
    )


def _call(nspname: str, proname: str, prokind: str, variadic: bool, argtypes: list[str]) -> pgsql.Composable:
    """A call of the routine with typed null arguments (EXECUTE is checked before any argument)."""
    args = [pgsql.SQL("null::" + t) for t in argtypes]
    if variadic and args:
        args[-1] = pgsql.SQL("variadic ") + args[-1]
    target = pgsql.SQL("{}.{}({})").format(
        pgsql.Identifier(nspname), pgsql.Identifier(proname), pgsql.SQL(", ").join(args)
    )
    if prokind == "p":
        return pgsql.SQL("call ") + target
    if prokind == "w":
        return pgsql.SQL("select ") + target + pgsql.SQL(" over ()")
    return pgsql.SQL("select ") + target


def test_dbt_schemas_and_later_objects_are_there(priv_db):
    schemas = {r[0] for r in priv_db.admin_query("select nspname from pg_namespace")}
    assert set(DBT_SCHEMAS) <= schemas
    names = {(r[0], r[1]) for r in _routines(priv_db)}
    for expected in (
        ("raw", "ensure_partitions"),
        ("raw", "maintain_partitions"),
        ("raw", "partition_bounds"),
        ("udf", "ta_recursive"),
        ("udf", "ta_recursive_step"),
        ("marts", "later_writer_fn"),
        ("raw", "later_admin_fn"),
        ("rt", "later_admin_proc"),
        ("rt", "later_admin_agg"),
    ):
        assert expected in names


def test_the_reader_cannot_execute_any_project_routine_even_read_write(priv_db):
    reader = priv_db.conn("reader")
    outcomes = {}
    try:
        for nspname, proname, prokind, variadic, argtypes, *_ in _routines(priv_db):
            if nspname in READER_EXECUTABLE_SCHEMAS:
                continue
            outcomes[f"{nspname}.{proname}"] = _sqlstate_of(
                reader, _call(nspname, proname, prokind, variadic, argtypes)
            )
    finally:
        reader.close()
    assert "raw.maintain_partitions" in outcomes and "raw.ensure_partitions" in outcomes
    allowed = {name: code for name, code in outcomes.items() if code != errorcodes.INSUFFICIENT_PRIVILEGE}
    assert allowed == {}, "routines the reader was not refused (None = it ran)"


def test_the_reader_may_execute_no_routine_of_the_project(priv_db):
    executable = priv_db.admin_query(
        f"""
        select n.nspname, p.proname, p.prosecdef, p.provolatile, pg_get_userbyid(p.proowner)
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where {_USER_SCHEMAS} and has_function_privilege(%s, p.oid, 'execute')
        order by 1, 2
        """,
        (READER,),
    )
    assert executable == []


def test_the_original_attack_is_refused_and_a_landed_tick_survives(priv_db):
    def ticks_state():
        return priv_db.admin_query(
            "select (select count(*) from raw.ticks where symbol = %s),"
            " (select count(*) from pg_inherits where inhparent = 'raw.ticks'::regclass)",
            (TICK_SYMBOL,),
        )[0]

    before = ticks_state()
    assert before[0] == 1 and before[1] > 0
    reader = priv_db.conn("reader")
    try:
        attack = "select count(*) from raw.maintain_partitions(now() + interval '100 years')"
        assert _sqlstate_of(reader, attack) == errorcodes.INSUFFICIENT_PRIVILEGE
        # committed, as in the report (the transaction is aborted by the refusal: commit rolls back)
        with reader.cursor() as cur:
            cur.execute("begin read write")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="permission denied for function"):
                cur.execute(attack)
            cur.execute("commit")
        far = datetime.now(UTC) + timedelta(days=365 * 50)
        assert (
            _sqlstate_of(
                reader,
                pgsql.SQL("select raw.ensure_partitions('raw.ticks', {0}, {0})").format(pgsql.Literal(far)),
            )
            == errorcodes.INSUFFICIENT_PRIVILEGE
        )
    finally:
        reader.close()
    assert ticks_state() == before
    assert priv_db.admin_query("select to_regclass(%s)", (f"raw.ticks_p{far:%Y%m%d}",)) == [(None,)]


def _relations(db: PrivateDb) -> list[tuple]:
    return db.admin_query(
        f"""
        select n.nspname, c.relname, c.relkind,
               (select a.attname from pg_attribute a
                where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped order by a.attnum limit 1)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where {_USER_SCHEMAS} and c.relkind in ('r', 'p', 'v', 'm', 'f')
        order by 1, 2
        """
    )


def test_the_reader_cannot_change_any_table_view_or_schema_even_read_write(priv_db):
    relations = _relations(priv_db)
    kinds = {r[2] for r in relations}
    assert {"r", "p", "v"} <= kinds, kinds
    reader = priv_db.conn("reader")
    refused_codes = {errorcodes.INSUFFICIENT_PRIVILEGE}
    outcomes = {}
    try:
        for nspname, relname, relkind, first_column in relations:
            rel = pgsql.Identifier(nspname, relname)
            col = pgsql.Identifier(first_column)
            statements = {
                "insert": pgsql.SQL("insert into {} default values").format(rel),
                "update": pgsql.SQL("update {} set {} = {} where false").format(rel, col, col),
                "delete": pgsql.SQL("delete from {} where false").format(rel),
            }
            if relkind in ("r", "p", "f"):
                statements["truncate"] = pgsql.SQL("truncate {}").format(rel)
            for verb, statement in statements.items():
                outcomes[f"{verb} {nspname}.{relname}"] = _sqlstate_of(reader, statement)
        schemas = [
            r[0] for r in priv_db.admin_query(f"select n.nspname from pg_namespace n where {_USER_SCHEMAS}")
        ]
        assert {"public", "raw", "rt", *DBT_SCHEMAS} <= set(schemas)
        for nspname in schemas:
            schema = pgsql.Identifier(nspname)
            outcomes[f"create table in {nspname}"] = _sqlstate_of(
                reader, pgsql.SQL("create table {}.reader_probe (x integer)").format(schema)
            )
            outcomes[f"create function in {nspname}"] = _sqlstate_of(
                reader,
                pgsql.SQL(
                    "create function {}.reader_probe() returns integer language sql as 'select 1'"
                ).format(schema),
            )
        outcomes["create temp table"] = _sqlstate_of(reader, "create temp table reader_probe (x integer)")
        outcomes["create schema"] = _sqlstate_of(reader, "create schema reader_probe")
        outcomes["create large object"] = _sqlstate_of(reader, "select lo_create(0)")
        outcomes["large object from bytea"] = _sqlstate_of(reader, "select lo_from_bytea(0, 'x')")
    finally:
        reader.close()
    not_refused = {what: code for what, code in outcomes.items() if code not in refused_codes}
    assert not_refused == {}, "statements the reader was not refused (None = it ran)"
    # and no table privilege but SELECT anywhere
    writable = priv_db.admin_query(
        f"""
        select c.oid::regclass::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where {_USER_SCHEMAS} and (
            c.relkind in ('r', 'p', 'v', 'm', 'f')
                and has_table_privilege(%s, c.oid, 'insert, update, delete, truncate, references, trigger')
            or c.relkind = 'S' and has_sequence_privilege(%s, c.oid, 'usage, update'))
        """,
        (READER, READER),
    )
    assert writable == []


def test_no_security_definer_function_is_executable_by_public_or_the_reader(priv_db):
    rows = priv_db.admin_query(
        """
        select p.oid::regprocedure::text,
               has_function_privilege('public', p.oid, 'execute'),
               has_function_privilege(%s, p.oid, 'execute'),
               has_function_privilege('market_writer', p.oid, 'execute')
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where p.prosecdef and n.nspname not in ('pg_catalog', 'information_schema')
        order by 1
        """,
        (READER,),
    )
    by_name = {r[0]: r[1:] for r in rows}
    assert "raw.maintain_partitions(timestamp with time zone)" in by_name
    assert "raw.ensure_partitions(text,timestamp with time zone,timestamp with time zone)" in by_name
    assert "marts.later_writer_fn()" in by_name and "raw.later_admin_fn()" in by_name
    exposed = {name: (public, reader) for name, (public, reader, _) in by_name.items() if public or reader}
    assert exposed == {}, "SECURITY DEFINER functions executable by (PUBLIC, market_reader)"
    assert by_name["raw.maintain_partitions(timestamp with time zone)"][2]
    assert by_name["raw.ensure_partitions(text,timestamp with time zone,timestamp with time zone)"][2]


def test_the_reader_still_reads_every_view_it_is_granted(priv_db):
    """Views run their functions with the reader's rights: none may need a routine it cannot execute."""
    views = priv_db.admin_query(
        f"""
        select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where {_USER_SCHEMAS} and c.relkind in ('v', 'm') and has_table_privilege(%s, c.oid, 'select')
        """,
        (READER,),
    )
    assert ("marts", "fct_daily_prices") in views
    reader = priv_db.conn("reader")
    try:
        with reader.cursor() as cur:
            for nspname, relname in views:
                cur.execute(pgsql.SQL("select count(*) from {}").format(pgsql.Identifier(nspname, relname)))
                assert cur.fetchone()[0] > 0 or relname != "fct_daily_prices"
    finally:
        reader.close()


def test_the_writer_still_makes_partitions_and_runs_maintenance(priv_db):
    writer = priv_db.conn("writer")
    far = datetime(2033, 2, 3, tzinfo=UTC)
    try:
        with writer.cursor() as cur:
            cur.execute("select raw.ensure_partitions('raw.ticks', %s, %s)", (far, far))
            assert cur.fetchone()[0] == 1
            cur.execute("select count(*) from raw.maintain_partitions()")
            cur.execute("create temp table writer_probe (x integer)")
    finally:
        writer.close()
