"""The sink's tick landing step against the real PostgreSQL: exact dedup on (symbol, event_time)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from common.db import connect
from spark_streaming import indicators as ind
from spark_streaming.landing import land_ticks
from spark_streaming.sink import _TEMP_TABLES, BatchFrames, PostgresSink
from tests.spark_streaming.helpers import private_database, query, wait_for


def _ticks(symbols: list[str], times: list[int], offset0: int = 0) -> pd.DataFrame:
    n = len(symbols)
    return pd.DataFrame(
        {
            "symbol": symbols,
            "event_time_ms": np.array(times, dtype=np.int64),
            "price": 100.0 + np.arange(n),
            "size": np.ones(n),
            "bid": np.nan,
            "ask": np.nan,
            "day_volume": np.nan,
            "currency": None,
            "exchange": None,
            "source": "test",
            "ingest_time_ms": np.int64(times[0]) if n else 0,
            "kafka_partition": 0,
            "kafka_offset": offset0 + np.arange(n),
        }
    )


@pytest.fixture(scope="module")
def landing_db(stack):
    return private_database("test_stream_landing")


def _land(db, frame: pd.DataFrame) -> pd.DataFrame:
    conn = connect("writer", db)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(_TEMP_TABLES)
            return land_ticks(cur, frame)
    finally:
        conn.close()


def test_land_ticks_returns_only_the_rows_it_added_and_an_empty_frame_for_an_all_duplicate_batch(landing_db):
    t = int(time.time() * 1000) - 60_000
    first = _ticks(["ZB", "ZA", "ZC"], [t + 2, t + 1, t])
    assert len(_land(landing_db, first)) == 3
    again = _ticks(["ZA", "ZB"], [t + 1, t + 2], offset0=10)
    added = _land(landing_db, again)
    assert added.empty
    assert list(added.columns) == list(again.columns)
    mixed = _ticks(["ZA", "ZD", "ZC", "ZC"], [t + 1, t, t, t + 5], offset0=20)
    added = _land(landing_db, mixed)
    assert sorted(zip(added["symbol"], added["event_time_ms"].tolist(), strict=True)) == [
        ("ZC", t + 5),
        ("ZD", t),
    ]
    # the first landed row of a key stays: offsets 0..2 for the first three keys, not the replays
    rows = query(landing_db, "select symbol, kafka_offset from raw.ticks order by symbol, event_time")
    assert rows == [("ZA", 1), ("ZB", 0), ("ZC", 2), ("ZC", 23), ("ZD", 21)]


def test_land_ticks_keeps_the_input_row_values_of_the_added_rows(landing_db):
    t = int(time.time() * 1000) - 30_000
    frame = _ticks(["Q,1", 'Q"2'], [t, t])  # CSV-hostile symbols survive the COPY both ways
    added = _land(landing_db, frame)
    assert sorted(added["symbol"]) == sorted(["Q,1", 'Q"2'])
    assert added.set_index("symbol")["price"].to_dict() == {"Q,1": 100.0, 'Q"2': 101.0}


def test_the_direct_copy_and_the_deduplicating_path_land_the_same_values(landing_db):
    """A batch without duplicates goes straight into raw.ticks; one with a duplicate falls back to the
    temp table and ON CONFLICT. Both must store the same values, times exact to the millisecond."""
    t = int(time.time() * 1000) - 20_000
    direct = _ticks(["PX", 'P"Y'], [t + 1, t + 7]).assign(bid=[99.5, np.nan], currency=["USD", None])
    assert len(_land(landing_db, direct)) == 2
    # PX at t + 1 is a duplicate: the whole batch takes the fallback, which adds only the new rows
    fallback = _ticks(["PX", "PZ", 'P"Z'], [t + 1, t + 3, t + 9], offset0=5).assign(
        bid=[1.0, 99.5, np.nan], currency=["EUR", "USD", None]
    )
    assert set(_land(landing_db, fallback)["symbol"]) == {"PZ", 'P"Z'}
    rows = query(
        landing_db,
        "select symbol, (extract(epoch from event_time) * 1000)::bigint, (extract(epoch from ingest_time)"
        " * 1000)::bigint, price, bid, currency, kafka_offset from raw.ticks where symbol like 'P%%'"
        " order by event_time",
    )
    assert rows == [
        ("PX", t + 1, t + 1, 100.0, 99.5, "USD", 0),
        ("PZ", t + 3, t + 1, 101.0, 99.5, "USD", 6),
        ('P"Y', t + 7, t + 1, 101.0, None, None, 1),
        ('P"Z', t + 9, t + 1, 102.0, None, None, 7),
    ]


def _sink_frames(ticks: pd.DataFrame) -> BatchFrames:
    rows = ticks.assign(kafka_topic="test", kafka_ms=ticks["event_time_ms"], key=None, value=None)
    return BatchFrames(ticks=rows, bars=pd.DataFrame(), dead=pd.DataFrame(), input_rows=len(rows))


def _drop_partition(db) -> None:
    admin = connect("admin", db)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("drop table if exists raw.ticks_p20010304")
    finally:
        admin.close()


def test_a_partition_dropped_after_the_sink_made_it_is_made_again_and_its_ticks_land(landing_db):
    # the sink remembers the days whose partitions it made (one call fewer per table and batch); a
    # partition dropped meanwhile (retention) must not send the next batches' ticks to dead letters
    query_id = f"test-partitions-{uuid.uuid4()}"
    sink = PostgresSink(
        landing_db, "test_partitions", lambda: query_id, 5_000, 120_000, ind.SignalThresholds()
    )
    day = int(datetime(2001, 3, 4, 12, tzinfo=UTC).timestamp() * 1000)
    _drop_partition(landing_db)  # an earlier run's
    try:
        first = sink.write(0, _sink_frames(_ticks(["PA", "PB"], [day, day + 1])))
        assert first.fresh_ticks == 2 and not first.careful
        _drop_partition(landing_db)
        outcomes = [
            sink.write(
                b, _sink_frames(_ticks([f"P{b}A", f"P{b}B"], [day + 10 * b, day + 10 * b + 1], 10 * b))
            )
            for b in (1, 2)
        ]
        assert [o.fresh_ticks for o in outcomes] == [2, 2]
        assert [o.refused_by_database for o in outcomes] == [0, 0]
        assert not outcomes[1].careful  # the partition is asked for again, not assumed to be there
        assert query(landing_db, "select count(*) from raw.ticks_p20010304") == [(4,)]
    finally:
        sink.close()


def _update_counts(db, parent: str, partition: str) -> tuple[int, int]:
    """(updates, HOT updates) of one partition of `parent`, from pg_stat_user_tables."""
    rows = query(
        db,
        "select s.n_tup_upd, s.n_tup_hot_upd from pg_stat_user_tables s"
        " where s.schemaname = %s and s.relname = %s",
        tuple(f"{parent}_p{partition}".split(".")),
    )
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


def test_the_sinks_revisions_of_open_bars_are_hot_updates(landing_db):
    # issue 14: each batch revises the open bar of its symbols in rt.bars_1m and rt.indicators_1m; no
    # index column changes (V024 keeps no index on updated_at), so PostgreSQL updates them in place
    # (HOT: no new index entries). V021's BRIN index on updated_at made every one of them non-HOT.
    query_id = f"test-hot-{uuid.uuid4()}"
    sink = PostgresSink(landing_db, "test_hot", lambda: query_id, 5_000, 120_000, ind.SignalThresholds())
    minute = int(datetime(2001, 5, 6, 14, 30, tzinfo=UTC).timestamp() * 1000)
    symbols = ["HA", "HB", "HC"]
    batches = 12  # a tick every 4 s of the minute: the bar stays open (allowed lateness 5 s)
    try:
        outcomes = [
            sink.write(b, _sink_frames(_ticks(symbols, [minute + 4_000 * b] * 3, offset0=3 * b)))
            for b in range(batches)
        ]
    finally:
        sink.close()  # a backend's statistics reach pg_stat_user_tables when it ends (or idles a while)
    assert [o.fresh_ticks for o in outcomes] == [3] * batches
    assert query(
        landing_db,
        "select count(*), bool_or(is_final), max(trade_count) from rt.bars_1m where symbol = any(%s)",
        (symbols,),
    ) == [(3, False, batches)]
    # room in each page for the revisions (V025: the partition policy's fillfactor)
    assert query(
        landing_db,
        "select relname, reloptions from pg_class where relname in"
        " ('bars_1m_p20010506', 'indicators_1m_p20010506') order by relname",
    ) == [("bars_1m_p20010506", ["fillfactor=70"]), ("indicators_1m_p20010506", ["fillfactor=70"])]
    expected = (batches - 1) * len(symbols)  # the first batch inserts, each later one updates
    for parent in ("rt.bars_1m", "rt.indicators_1m"):
        counts: list[tuple[int, int]] = []

        def flushed(parent=parent, counts=counts) -> bool:
            counts.append(_update_counts(landing_db, parent, "20010506"))
            return counts[-1][0] >= expected

        wait_for(flushed, 30, f"{parent}'s update count in pg_stat_user_tables")
        updates, hot = counts[-1]
        assert updates == expected, parent
        assert hot == updates, f"{parent}: {hot} of {updates} updates HOT"
