"""Two shards of the streaming job (two processes, `STREAM_SHARDS=2`, `STREAM_SHARD=0|1`, one database)
land row for row the same raw.ticks, raw.dead_letters, rt.bars_1m, rt.indicators_1m and rt.signals as
one job reading everything, from the same Kafka input; each shard reads only its own partitions.

The input is test_recovery's (12 symbols x 40 minutes, duplicates, malformed records) plus one clock
tick at the end on every partition of the ticks topic, so every partition has records for both shards.
The one bound that couples symbols, the idle close (an idle symbol's open bars close once the newest
event *of the query* is `idle_close_ms` past them), is set out of reach here: the query's newest event
is one job's or one shard's, and how far it runs ahead of a symbol depends on which partitions a batch
reads. The symbols' keys are random, so a partition can hold nothing but a clock tick, which Spark's
rate limit reads in the first batch; the newest event then jumps 40 minutes ahead and later ticks fall
in bars already closed (seen once: 45 ticks late in one job's batch, none in the same shard's). With the
idle close out of reach, bars close by each symbol's own lateness bound in both runs. Floats are
compared to 1e-12 relative (see _same_rows).
"""

from __future__ import annotations

import json
import math
import time
import uuid

import pytest

from common.contract import TOPICS, Topic, message_key
from common.migrate import drop_database
from spark_streaming.checkpoint import checkpoint_offsets
from spark_streaming.feed import delete_topics, producer, tick_value
from tests.spark_streaming.helpers import (
    JobProcess,
    private_database,
    private_topics,
    produce,
    query,
    wait_for,
)
from tests.spark_streaming.test_recovery import TABLES, _input, _snapshot

pytestmark = pytest.mark.slow


def _clock_ticks(bootstrap: str, topic: str, tag: str, at_ms: int, now: int) -> int:
    """One tick of its own symbol on each partition of the ticks topic (explicit partition)."""
    p = producer(bootstrap)
    count = TOPICS[Topic.TICKS].partitions
    for part in range(count):
        sym = f"CLK{part}{tag}"
        p.produce(topic, value=tick_value(sym, at_ms, 1.0, 1.0, now), key=message_key(sym), partition=part)
    assert p.flush(60) == 0
    return count


def _same_rows(got: list[tuple], expected: list[tuple]) -> bool:
    """Row for row equal; floats to 1e-12 relative: a shard's batches hold other ticks than one job's
    (150 offsets of 3 partitions, not of 6), so a bar's sums (vwap's price x size) add in another order."""

    def same(a, b) -> bool:
        if isinstance(a, float) and isinstance(b, float):
            return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
        return a == b

    return len(got) == len(expected) and all(
        len(g) == len(e) and all(same(a, b) for a, b in zip(g, e, strict=True))
        for g, e in zip(got, expected, strict=True)
    )


def test_two_shards_land_the_same_rows_as_one_job(bootstrap_servers, tmp_path):
    tag = uuid.uuid4().hex[:6].upper()
    topics = private_topics(bootstrap_servers, tag.lower())
    now = int(time.time() * 1000)
    items = _input(tag, now)
    produce(bootstrap_servers, topics[Topic.TICKS], items)
    end_ms = max(json.loads(v)["event_time_ms"] for _, v in items if v.startswith(b"{") and v.endswith(b"}"))
    total = len(items) + _clock_ticks(bootstrap_servers, topics[Topic.TICKS], tag, end_ms, now)
    pg_one = private_database(f"test_stream_one_{tag.lower()}")
    pg_two = private_database(f"test_stream_two_{tag.lower()}")
    job_settings = {
        "max_offsets_per_trigger": 150,
        "allowed_lateness_ms": 600_000,
        "idle_close_ms": 86_400_000,  # out of reach: see the module's docstring
        "master": "local[1]",
    }
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = JobProcess(tmp_path / "one", topics, pg_one, **job_settings)
    name = f"test_shards_{tag.lower()}"
    shards = [
        JobProcess(tmp_path / "two", topics, pg_two, query_name=name, shards=2, shard=i, **job_settings)
        for i in range(2)
    ]

    def consumed(pg) -> int:
        return query(pg, "select coalesce(sum(input_rows), 0) from rt.stream_ledger")[0][0]

    try:
        for job in [one, *shards]:
            job.start()
        wait_for(lambda: consumed(pg_one) >= total, 300, "the one job to finish")
        wait_for(lambda: consumed(pg_two) >= total, 300, "the two shards to finish")
        assert consumed(pg_one) == consumed(pg_two) == total
        expected, got = _snapshot(pg_one), _snapshot(pg_two)
        for table in TABLES:
            assert len(expected[table]) > 0 or table == "rt.signals"
            assert _same_rows(got[table], expected[table]), f"{table} differs between two shards and one job"
        # two queries, each with its own heartbeat and ledger rows, each reading only its partitions
        beats = query(pg_two, "select query_name, query_id from rt.stream_heartbeat order by 1")
        assert [b[0] for b in beats] == [f"{name}-s0of2", f"{name}-s1of2"], beats
        for i, (_, query_id) in enumerate(beats):
            rows = query(
                pg_two, "select sum(input_rows) from rt.stream_ledger where query_id = %s", (query_id,)
            )
            assert rows[0][0] > 0, (i, rows)
            assert shards[i].alive(), shards[i].log_tail()
            read = checkpoint_offsets(tmp_path / "two" / f"checkpoint-s{i}of2", 0)
            assert set(read[topics[Topic.TICKS]]) == {
                p for p in range(TOPICS[Topic.TICKS].partitions) if p % 2 == i
            }
        print(f"\n{total} records: 1 job and 2 shards landed the same rows")
    finally:
        for job in [one, *shards]:
            job.stop()
        delete_topics(bootstrap_servers, topics.values())
        drop_database(pg_one)
        drop_database(pg_two)
