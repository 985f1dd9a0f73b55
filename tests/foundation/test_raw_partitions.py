"""Partitioned raw tables: rows land in the right partition, missing partitions fail clearly or are
made on demand, old ones are dropped by retention, and the read-only role cannot write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from psycopg2 import errors
from pydantic import SecretStr

from common.db import DatabaseUnavailable, connect
from common.migrate import recreate_database
from common.settings import PostgresSettings

TEST_DB = "market_foundation_test"


@pytest.fixture(scope="module")
def test_db(stack) -> PostgresSettings:
    """A private database with every migration applied, so retention tests touch nobody else."""
    return recreate_database(TEST_DB)


def _conn(settings: PostgresSettings, role: str):
    conn = connect(role, settings)
    conn.autocommit = True
    return conn


def _partition_of(cur, table: str, where: str, params) -> str:
    cur.execute(f"select tableoid::regclass::text from {table} where {where}", params)
    return cur.fetchone()[0]


def test_rows_land_in_the_partition_of_their_event_date(test_db):
    conn = _conn(test_db, "writer")
    day = datetime(2026, 3, 14, 15, 30, tzinfo=UTC)
    with conn.cursor() as cur:
        cur.execute("select raw.ensure_partitions('raw.ticks', %s, %s)", (day, day + timedelta(days=1)))
        cur.execute("select raw.ensure_partitions('raw.bars', %s, %s)", (day, day))
        cur.execute("select raw.ensure_partitions('raw.dead_letters', %s, %s)", (day, day))
        for when in (day, day + timedelta(days=1)):
            cur.execute(
                "insert into raw.ticks (symbol, event_time, price, size, source, ingest_time) "
                "values ('PART', %s, 10, 1, 'synthetic', now())",
                (when,),
            )
        cur.execute(
            "insert into raw.bars (symbol, interval, bar_start, open, high, low, close, volume, source,"
            " ingest_time) values ('PART', '1d', %s, 1, 2, 0.5, 1.5, 100, 'replay', now())",
            (day,),
        )
        cur.execute(
            "insert into raw.dead_letters (failed_at, kafka_topic, kafka_partition, kafka_offset, stage,"
            " reason, detail, source, intended_topic, payload) values (%s, 'market.deadletter.v1', 0, 1,"
            " 'ingest', 'malformed_json', 'x', 'replay', 'market.ticks.v1', '{')",
            (day,),
        )
        assert _partition_of(cur, "raw.ticks", "event_time = %s", (day,)) == "raw.ticks_p20260314"
        assert _partition_of(cur, "raw.ticks", "event_time = %s", (day + timedelta(days=1),)) == (
            "raw.ticks_p20260315"
        )
        assert _partition_of(cur, "raw.bars", "bar_start = %s", (day,)) == "raw.bars_p202603"
        assert _partition_of(cur, "raw.dead_letters", "failed_at = %s", (day,)) == "raw.dead_letters_p202603"
        cur.execute(
            "select count(*) from pg_inherits where inhparent = 'raw.ticks'::regclass"
            " and inhrelid = 'raw.ticks_p20260314'::regclass"
        )
        assert cur.fetchone()[0] == 1
    conn.close()


def test_a_row_for_a_date_without_partition_fails_with_a_clear_error(test_db):
    conn = _conn(test_db, "writer")
    far = datetime(2031, 7, 4, tzinfo=UTC)
    with conn.cursor() as cur, pytest.raises(errors.CheckViolation, match='no partition of relation "ticks"'):
        cur.execute(
            "insert into raw.ticks (symbol, event_time, price, size, source, ingest_time) "
            "values ('PART', %s, 10, 1, 'synthetic', now())",
            (far,),
        )
    conn.close()


def test_ensure_partitions_makes_the_missing_day_then_the_insert_succeeds(test_db):
    conn = _conn(test_db, "writer")
    far = datetime(2031, 7, 5, 12, tzinfo=UTC)
    with conn.cursor() as cur:
        cur.execute("select raw.ensure_partitions('raw.ticks', %s, %s)", (far, far))
        assert cur.fetchone()[0] == 1
        cur.execute("select raw.ensure_partitions('raw.ticks', %s, %s)", (far, far))
        assert cur.fetchone()[0] == 0, "a second call must not create anything"
        cur.execute(
            "insert into raw.ticks (symbol, event_time, price, size, source, ingest_time) "
            "values ('PART', %s, 10, 1, 'synthetic', now())",
            (far,),
        )
        assert _partition_of(cur, "raw.ticks", "event_time = %s", (far,)) == "raw.ticks_p20310705"
    conn.close()


def test_maintenance_makes_partitions_ahead_and_drops_those_past_retention(test_db):
    conn = _conn(test_db, "admin")
    at = datetime(2040, 1, 10, tzinfo=UTC)
    with conn.cursor() as cur:
        cur.execute(
            "select raw.ensure_partitions('raw.ticks', %s, %s)",
            (at - timedelta(days=40), at - timedelta(days=40)),
        )
        cur.execute("select * from raw.maintain_partitions(%s)", (at,))
        actions = cur.fetchall()
        assert ("dropped", "raw.ticks_p20391201") in actions
        for ahead in range(4):  # premake = 3 days for raw.ticks, plus the current day
            day = (at + timedelta(days=ahead)).strftime("%Y%m%d")
            cur.execute("select to_regclass(%s)", (f"raw.ticks_p{day}",))
            assert cur.fetchone()[0] is not None, day
        cur.execute("select to_regclass('raw.ticks_p20391201')")
        assert cur.fetchone()[0] is None
    conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "insert into raw.ticks (symbol, event_time, price, size, source, ingest_time)"
        " values ('RO', '2026-03-14T10:00:00Z', 1, 1, 'synthetic', now())",
        "update raw.ticks set price = 0 where symbol = 'PART'",
        "delete from raw.ticks where symbol = 'PART'",
        "insert into rt.bars_1m (symbol, bar_start, open, high, low, close, volume, trade_count)"
        " values ('RO', '2026-03-14T10:00:00Z', 1, 1, 1, 1, 1, 1)",
    ],
)
def test_the_read_only_role_cannot_insert_update_or_delete(test_db, statement):
    conn = _conn(test_db, "reader")
    with conn.cursor() as cur, pytest.raises((errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction)):
        cur.execute(statement)
    conn.close()


def test_the_read_only_role_is_refused_even_after_a_mistaken_grant(test_db):
    admin = _conn(test_db, "admin")
    with admin.cursor() as cur:
        cur.execute("grant insert on raw.bars to market_reader")
    reader = _conn(test_db, "reader")
    try:
        with reader.cursor() as cur, pytest.raises(errors.ReadOnlySqlTransaction):
            cur.execute(
                "insert into raw.bars (symbol, interval, bar_start, open, high, low, close, volume, source,"
                " ingest_time) values ('RO', '1d', '2026-03-14', 1, 1, 1, 1, 1, 'replay', now())"
            )
    finally:
        with admin.cursor() as cur:
            cur.execute("revoke insert on raw.bars from market_reader")
        reader.close()
        admin.close()


READ_DAY = datetime(2026, 5, 20, 9, 30, tzinfo=UTC)
READ_ROWS = {  # one row per table, written by the writer role, marked so no other test's rows count
    "raw.ticks": (
        "insert into raw.ticks (symbol, event_time, price, size, source, ingest_time)"
        " values ('READER', %(t)s, 12.5, 3, 'synthetic', %(t)s)",
        "select price from raw.ticks where symbol = 'READER'",
        12.5,
    ),
    "raw.bars": (
        "insert into raw.bars (symbol, interval, bar_start, open, high, low, close, volume, source,"
        " ingest_time) values ('READER', '1d', %(t)s, 1, 2, 0.5, 1.75, 100, 'replay', %(t)s)",
        "select close from raw.bars where symbol = 'READER'",
        1.75,
    ),
    "raw.dead_letters": (
        "insert into raw.dead_letters (failed_at, kafka_topic, kafka_partition, kafka_offset, stage,"
        " reason, detail, source, intended_topic, payload) values (%(t)s, 'reader.test', 0, 7,"
        " 'ingest', 'malformed_json', 'x', 'replay', 'market.ticks.v1', '{')",
        "select kafka_offset from raw.dead_letters where kafka_topic = 'reader.test'",
        7,
    ),
    "rt.bars_1m": (
        "insert into rt.bars_1m (symbol, bar_start, open, high, low, close, volume, trade_count)"
        " values ('READER', %(t)s, 1, 2, 0.5, 1.25, 10, 4)",
        "select close from rt.bars_1m where symbol = 'READER'",
        1.25,
    ),
    "rt.indicators_1m": (
        "insert into rt.indicators_1m (symbol, bar_start, close) values ('READER', %(t)s, 1.5)",
        "select close from rt.indicators_1m where symbol = 'READER'",
        1.5,
    ),
    "rt.signals": (
        "insert into rt.signals (symbol, signal_time, signal_type, value) values"
        " ('READER', %(t)s, 'gap_up', 2.5)",
        "select value from rt.signals where symbol = 'READER'",
        2.5,
    ),
}


def test_the_read_only_role_can_read_raw_and_rt(test_db):
    writer = _conn(test_db, "writer")
    with writer.cursor() as cur:
        for table, (insert, _, _) in READ_ROWS.items():
            cur.execute("select raw.ensure_partitions(%s, %s, %s)", (table, READ_DAY, READ_DAY))
            cur.execute(insert, {"t": READ_DAY})
    writer.close()
    conn = _conn(test_db, "reader")
    with conn.cursor() as cur:
        for table, (_, select, value) in READ_ROWS.items():
            cur.execute(select)
            assert cur.fetchall() == [(value,)], table
    conn.close()


def test_a_wrong_password_gives_one_clear_error(test_db):
    bad = test_db.model_copy(update={"writer_password": SecretStr("not-the-password")})
    with pytest.raises(DatabaseUnavailable, match=r"as writer: .*password authentication failed"):
        connect("writer", bad)
