"""Fault tolerance of the running job: SIGKILL mid-run three times, and a PostgreSQL restart mid-run."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from common.contract import Topic
from common.db import connect
from common.migrate import drop_database, migrate
from common.settings import postgres_settings
from devstack.postgres import Postgres
from devstack.process import port_open
from spark_streaming.checkpoint import checkpoint_offsets, last_committed_batch
from spark_streaming.feed import delete_topics, producer, tick_value
from tests.conftest import end_offsets
from tests.spark_streaming.helpers import (
    JobProcess,
    private_database,
    private_topics,
    produce,
    query,
    random_walk,
    wait_for,
)

pytestmark = pytest.mark.slow

TABLES = {
    "raw.ticks": "select symbol, event_time, price, size, source, ingest_time, kafka_partition, kafka_offset "
    "from raw.ticks order by 1, 2",
    "raw.dead_letters": "select failed_at, kafka_topic, kafka_partition, kafka_offset, stage, reason, "
    "payload "
    "from raw.dead_letters order by 2, 3, 4",
    "rt.bars_1m": "select symbol, bar_start, open, high, low, close, volume, vwap, trade_count, is_final "
    "from rt.bars_1m order by 1, 2",
    "rt.indicators_1m": "select symbol, bar_start, close, ema_12, ema_26, macd, macd_signal, macd_hist, "
    "rsi_14, "
    "sma_20, sma_50, sma_200, session_vwap, is_final from rt.indicators_1m order by 1, 2",
    "rt.signals": "select symbol, signal_time, signal_type, value, threshold from rt.signals "
    "order by 1, 2, 3",
}


def _input(tag: str, now: int) -> list[tuple[str | None, bytes]]:
    """12 symbols x 40 minutes x 5 ticks, a few re-sent duplicates and malformed records, in time order."""
    start = (now - 3 * 3_600_000) // 60_000 * 60_000
    items: list[tuple[str | None, bytes]] = []
    walks = {s: random_walk(200, s) for s in range(12)}
    for i in range(200):
        t = start + i * 12_000
        for s in range(12):
            sym = f"K{s:02d}{tag}"
            items.append((sym, tick_value(sym, t + s, round(float(walks[s][i]), 4), float(1 + i % 7), now)))
            if i % 37 == 5:  # a duplicate of the same event
                items.append(
                    (sym, tick_value(sym, t + s, round(float(walks[s][i]), 4), float(1 + i % 7), now))
                )
        if i % 50 == 10:
            items.append((f"K00{tag}", b"{not json"))
    items.append((f"CLK{tag}", tick_value(f"CLK{tag}", start + 200 * 12_000 + 3 * 60_000, 1.0, 1.0, now)))
    return items


def _snapshot(pg) -> dict[str, list[tuple]]:
    return {name: query(pg, text) for name, text in TABLES.items()}


def test_three_sigkills_mid_run_give_the_same_tables_as_an_uninterrupted_run(bootstrap_servers, tmp_path):
    tag = uuid.uuid4().hex[:6].upper()
    topics = private_topics(bootstrap_servers, tag.lower())
    items = _input(tag, int(time.time() * 1000))
    produce(bootstrap_servers, topics[Topic.TICKS], items)
    pg_ref = private_database(f"test_stream_ref_{tag.lower()}")
    pg_kill = private_database(f"test_stream_kill_{tag.lower()}")
    # every batch through the pipelined sink: a kill may land while a batch Spark committed is in flight
    settings = {"max_offsets_per_trigger": 250, "allowed_lateness_ms": 600_000, "pipeline_min_rows": 0}
    (tmp_path / "ref").mkdir()
    (tmp_path / "kill").mkdir()
    ref = JobProcess(tmp_path / "ref", topics, pg_ref, **settings)
    killed = JobProcess(tmp_path / "kill", topics, pg_kill, **settings)

    def consumed(pg) -> int:
        return query(pg, "select coalesce(sum(input_rows), 0) from rt.stream_ledger")[0][0]

    def batches(pg) -> int:
        return query(pg, "select count(*) from rt.stream_ledger")[0][0]

    assert sum(end_offsets(bootstrap_servers, topics[Topic.TICKS]).values()) == len(items)
    ref.start()
    killed.start()
    try:
        committed_at_kills = [0]
        for at_batch in (2, 4, 6):
            # at least `at_batch` batches, and at least one committed by this very process (a poll may
            # see several batches land at once, so `at_batch` alone can be reached before a restart)
            target = max(at_batch, committed_at_kills[-1] + 1)
            wait_for(lambda at=target: batches(pg_kill) >= at, 240, f"batch {target} of the killed run")
            killed.kill()
            # the kill hit a run that had committed batches and had input left: the ledger, read once
            # the process is dead, holds at least `at_batch` batches and less than every record
            done, rows = batches(pg_kill), consumed(pg_kill)
            assert done >= at_batch and rows < len(items), (at_batch, done, rows, len(items))
            committed_at_kills.append(done)
            killed.start()
        assert committed_at_kills == sorted(set(committed_at_kills))  # each restart made progress
        committed_at_kills.pop(0)
        wait_for(lambda: consumed(pg_ref) >= len(items), 300, "the uninterrupted run to finish")
        wait_for(lambda: consumed(pg_kill) >= len(items), 300, "the killed run to finish")
        assert consumed(pg_kill) == len(items)  # no batch landed twice
        ids = [r[0] for r in query(pg_kill, "select batch_id from rt.stream_ledger order by 1")]
        assert ids == list(range(len(ids)))  # no gap
        expected, got = _snapshot(pg_ref), _snapshot(pg_kill)
        for name in TABLES:
            assert len(expected[name]) > 0 or name == "rt.signals"
            assert got[name] == expected[name], f"{name} differs after the kills"
    finally:
        ref.stop()
        killed.stop()
        delete_topics(bootstrap_servers, topics.values())
        drop_database(pg_ref)
        drop_database(pg_kill)


def test_a_batch_spark_committed_while_its_write_was_in_flight_is_replayed_after_a_sigkill(
    bootstrap_servers, tmp_path
):
    """The pipelined sink's window (spark_streaming/pipeline.py): Spark has committed batch 0 in its
    checkpoint while PostgreSQL has not, the job dies; the next start writes it from Kafka again."""
    tag = uuid.uuid4().hex[:6].upper()
    topics = private_topics(bootstrap_servers, tag.lower())
    items = _input(tag, int(time.time() * 1000))
    produce(bootstrap_servers, topics[Topic.TICKS], items)
    pg = private_database(f"test_stream_inflight_{tag.lower()}")
    job = JobProcess(
        tmp_path, topics, pg, max_offsets_per_trigger=400, allowed_lateness_ms=600_000, pipeline_min_rows=0
    )
    checkpoint = tmp_path / "checkpoint"
    try:
        # hold the ledger: the sink's first statement of batch 0 (its ledger check) waits on the lock
        blocker = connect("admin", pg)
        with blocker.cursor() as cur:
            cur.execute("lock table rt.stream_ledger in access exclusive mode")
        job.start()
        wait_for(lambda: (checkpoint / "commits" / "0").exists(), 240, "Spark to commit batch 0")
        job.kill()
        blocker.rollback()
        blocker.close()
        assert query(pg, "select count(*) from rt.stream_ledger")[0][0] == 0  # batch 0 was in flight
        job.start()
        ends = {topics[Topic.TICKS]: end_offsets(bootstrap_servers, topics[Topic.TICKS])}

        def caught_up() -> bool:  # Spark read every record and the ledger holds its newest batch
            last = last_committed_batch(checkpoint)
            done = checkpoint_offsets(checkpoint, last).get(topics[Topic.TICKS], {})
            ledger = query(pg, "select max(batch_id) from rt.stream_ledger")[0][0]
            return done == ends[topics[Topic.TICKS]] and ledger == last

        wait_for(caught_up, 240, "the restarted job to read and write every record")
        ids = [r[0] for r in query(pg, "select batch_id from rt.stream_ledger order by 1")]
        assert ids == list(range(len(ids)))  # every batch once
        assert query(pg, "select sum(input_rows) from rt.stream_ledger")[0][0] == len(items)
        valid = {(sym, value) for sym, value in items if value != b"{not json"}
        assert query(pg, "select count(*) from raw.ticks")[0][0] == len(valid)
        malformed = sum(1 for _, value in items if value == b"{not json")
        assert (
            query(pg, "select count(*) from raw.dead_letters where reason = 'malformed_json'")[0][0]
            == malformed
        )
        assert "event=batch_replaying batch_id=0 " in job.log_path.read_text(errors="replace")
    finally:
        job.stop()
        delete_topics(bootstrap_servers, topics.values())
        drop_database(pg)


@pytest.mark.stack
def test_job_recovers_from_a_postgresql_restart_without_loss(bootstrap_servers, tmp_path):
    """A private PostgreSQL server (the shared one stays up), restarted while ticks keep coming."""
    port = next(p for p in range(55433, 55500) if not port_open("127.0.0.1", p))
    pg = postgres_settings().model_copy(update={"port": port, "database": "market"})
    # not under pytest's tmp folder: a concurrent pytest session resets /tmp/pytest-of-<user> to 0700,
    # and the postgres user must keep traversing the path to its data directory
    pg_home = Path(tempfile.mkdtemp(prefix="stream-pg-", dir="/tmp"))
    server = Postgres(settings=pg, state_dir=pg_home, name="test-postgresql")
    server.start()
    tag = uuid.uuid4().hex[:6].upper()
    topics = private_topics(bootstrap_servers, tag.lower())
    job = None
    try:
        migrate(pg)
        job = JobProcess(tmp_path, topics, pg)
        job.start()
        wait_for(lambda: (tmp_path / "checkpoint" / "metadata").exists(), 120, "the query to start")
        sent = []
        stop = threading.Event()

        def feed() -> None:
            p = producer(bootstrap_servers)
            i = 0
            while not stop.is_set():
                now = int(time.time() * 1000)
                for s in range(5):
                    sym = f"R{s}{tag}"
                    p.produce(
                        topics[Topic.TICKS],
                        value=tick_value(sym, now + s, 100.0 + i % 13, 1.0, now),
                        key=sym.encode(),
                    )
                    sent.append(sym)
                i += 1
                p.poll(0)
                time.sleep(0.05)
            p.flush(30)

        feeder = threading.Thread(target=feed)
        feeder.start()
        wait_for(
            lambda: query(pg, "select count(*) from raw.ticks")[0][0] > 200, 180, "ticks before the restart"
        )
        landed_before = query(pg, "select count(*) from raw.ticks")[0][0]
        server.stop()
        # the outage hit a batch: the sink logs a retry of it while the server is down
        wait_for(lambda: "event=sink_retry" in job.log_path.read_text(errors="replace"), 120, "a sink retry")
        retried = {
            int(m.group(1))
            for m in re.finditer(r"event=sink_retry batch_id=(\d+)", job.log_path.read_text(errors="replace"))
        }
        assert job.alive()
        server.start()
        # ticks sent during and after the outage keep landing before the feed stops
        wait_for(
            lambda: query(pg, "select count(*) from raw.ticks")[0][0] > landed_before + 100,
            120,
            "ticks landing after the restart",
        )
        stop.set()
        feeder.join(60)
        wait_for(
            lambda: query(pg, "select count(*) from raw.ticks")[0][0] >= len(sent),
            180,
            "every tick after the restart",
        )
        assert job.alive()
        assert query(pg, "select count(*), count(distinct (symbol, event_time)) from raw.ticks")[0] == (
            len(sent),
            len(sent),
        )
        ids = [r[0] for r in query(pg, "select batch_id from rt.stream_ledger order by 1")]
        assert ids == list(range(len(ids)))
        assert retried and retried <= set(ids)  # the batch in retry during the outage was committed
    finally:
        if job is not None:
            job.stop()
        server.stop()
        delete_topics(bootstrap_servers, topics.values())
        shutil.rmtree(pg_home, ignore_errors=True)
