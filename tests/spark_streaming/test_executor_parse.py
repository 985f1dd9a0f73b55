"""The issue 13 prototype, parsing on the executors (spark_streaming/executor_parse.py), lands row for
row what the default job (parsing on the driver) lands: raw.ticks, raw.bars, raw.dead_letters,
rt.bars_1m, rt.indicators_1m and rt.signals, from the same Kafka input of the three topics.

The input is test_recovery's (12 symbols x 40 minutes, re-sent duplicates, malformed JSON) plus daily
bars on the bars topic, and on the dead-letter topic one ingest dead letter and one record that is not
a dead letter (refused by the stream). The two jobs read it at the same time into two databases with
the same batch size, so their batches hold the same offsets; the prototype runs on local[2], where its
one task per Kafka partition spreads the parsing over two Python workers.
"""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import date, timedelta

import pandas as pd
import pyarrow as pa
import pytest

from common.contract import Bar, BarInterval, DeadLetter, RejectReason, Source, Stage, Topic, encode
from common.migrate import drop_database
from dbt_project import sample_data
from spark_streaming.executor_parse import frames_from_parsed, parse_partition
from spark_streaming.feed import delete_topics
from spark_streaming.job import frames_from_records
from spark_streaming.settings import StreamingSettings
from tests.spark_streaming.helpers import (
    ExecutorParseJobProcess,
    JobProcess,
    private_database,
    private_topics,
    produce,
    query,
    wait_for,
)
from tests.spark_streaming.test_recovery import TABLES, _input

TABLES_HERE = {
    **TABLES,
    "raw.bars": "select symbol, interval, bar_start, open, high, low, close, volume, source, ingest_time, "
    "kafka_partition, kafka_offset from raw.bars order by 1, 2, 3",
}


def _bars(tag: str, now: int) -> list[tuple[str, bytes]]:
    days = sample_data.trading_days(date.today() - timedelta(days=1), 5)
    out = []
    for i in range(10):
        sym = f"DB{i % 2}{tag}"
        start = int(sample_data.session_start_utc(days[i // 2]).timestamp() * 1000)
        bar = Bar(
            symbol=sym,
            interval=BarInterval.D1,
            event_time_ms=start,
            open=50.0 + i,
            high=52.0 + i,
            low=49.0 + i,
            close=51.0 + i,
            volume=1000.0 + i,
            source=Source.REPLAY,
            ingest_time_ms=now - 60_000,
        )
        out.append((sym, encode(bar)))
    out.append((f"DB0{tag}", b'{"symbol": "DB0' + tag.encode() + b'", "interval": "1d"}'))  # refused
    return out


def _letters(tag: str, topic: str, now: int) -> list[tuple[str, bytes]]:
    letter = DeadLetter(
        reason=RejectReason.OVERSIZE,
        detail="too big",
        stage=Stage.INGEST,
        source="yahoo",
        topic=topic,
        symbol=f"ZZ{tag}",
        payload="{...}",
        failed_at_ms=now - 5000,
    )
    return [(f"ZZ{tag}", encode(letter)), (f"ZZ{tag}", b"[1, 2]")]


def test_frames_parsed_per_partition_equal_the_drivers_parse_of_the_whole_batch():
    """No Spark: the mapInArrow function over three 'partitions' of Arrow batches gives, once the driver
    has put them together, the very frames `frames_from_records` gives for the whole batch."""
    s = StreamingSettings()
    now = int(time.time() * 1000)
    tag = "UNIT"
    items = [
        *[(s.ticks_topic, k, v) for k, v in _input(tag, now)],
        *[(s.bars_topic, k, v) for k, v in _bars(tag, now)],
        *[(s.deadletter_topic, k, v) for k, v in _letters(tag, s.ticks_topic, now)],
    ]
    records = pd.DataFrame(
        {
            "kafka_topic": [t for t, _, _ in items],
            "kafka_partition": [i % 6 for i in range(len(items))],
            "kafka_offset": list(range(len(items))),
            "kafka_ms": now,
            "key": [k.encode() for _, k, _ in items],
            "value": [v for _, _, v in items],
        }
    )
    expected = frames_from_records(records, s)
    table = pa.Table.from_pandas(records, preserve_index=False)
    cuts = [0, 700, 1900, len(items)]  # the last 'partition' holds the bars and the dead letters
    rows = [
        batch
        for a, b in itertools.pairwise(cuts)
        for batch in parse_partition(iter(table.slice(a, b - a).to_batches(max_chunksize=300)), s)
    ]
    got = frames_from_parsed(pa.Table.from_batches(rows), frames_from_records(records.iloc[:0], s))
    assert got.input_rows == expected.input_rows == len(items)
    for dest in ("ticks", "bars"):  # in the batch's order, which picks the first of in-batch duplicates
        assert len(getattr(expected, dest)) > 0, dest
        pd.testing.assert_frame_equal(getattr(got, dest), getattr(expected, dest), obj=dest)
    # dead letters: the topic's own, then those the stream refused, per partition rather than per batch
    # (raw.dead_letters is keyed by the Kafka offset; its order is of no consequence)
    offset = ["kafka_topic", "kafka_partition", "kafka_offset"]
    assert len(expected.dead) == 7
    pd.testing.assert_frame_equal(
        got.dead.sort_values(offset, ignore_index=True), expected.dead.sort_values(offset, ignore_index=True)
    )


@pytest.mark.slow
def test_executor_parsing_lands_the_same_rows_as_the_default_job(bootstrap_servers, tmp_path):
    tag = uuid.uuid4().hex[:6].upper()
    topics = private_topics(bootstrap_servers, tag.lower())
    now = int(time.time() * 1000)
    ticks, bars = _input(tag, now), _bars(tag, now)
    letters = _letters(tag, topics[Topic.TICKS], now)
    produce(bootstrap_servers, topics[Topic.TICKS], ticks)
    produce(bootstrap_servers, topics[Topic.BARS], bars)
    produce(bootstrap_servers, topics[Topic.DEADLETTER], letters)
    total = len(ticks) + len(bars) + len(letters)
    pg_driver = private_database(f"test_stream_drv_{tag.lower()}")
    pg_exec = private_database(f"test_stream_exe_{tag.lower()}")
    settings = {"max_offsets_per_trigger": 250, "allowed_lateness_ms": 600_000}
    (tmp_path / "driver").mkdir()
    (tmp_path / "executors").mkdir()
    default = JobProcess(tmp_path / "driver", topics, pg_driver, master="local[1]", **settings)
    prototype = ExecutorParseJobProcess(
        tmp_path / "executors", topics, pg_exec, master="local[2]", **settings
    )

    def consumed(pg) -> int:
        return query(pg, "select coalesce(sum(input_rows), 0) from rt.stream_ledger")[0][0]

    try:
        default.start()
        prototype.start()
        wait_for(lambda: consumed(pg_driver) >= total, 300, "the default job to finish")
        try:
            wait_for(lambda: consumed(pg_exec) >= total, 300, "the prototype to finish")
        except AssertionError:
            raise AssertionError(prototype.log_tail()) from None
        assert consumed(pg_driver) == consumed(pg_exec) == total
        assert "parse=executors" in prototype.log_path.read_text()  # the prototype's entry point ran
        for name, text in TABLES_HERE.items():
            expected, got = query(pg_driver, text), query(pg_exec, text)
            assert len(expected) > 0 or name == "rt.signals", name
            assert got == expected, f"{name} differs between executor and driver parsing"
        refused = query(pg_exec, "select reason, count(*) from raw.dead_letters group by 1 order by 1")
        print(f"\n{total} records: executor parsing landed the same rows; dead letters {refused}")
    finally:
        default.stop()
        prototype.stop()
        delete_topics(bootstrap_servers, topics.values())
        drop_database(pg_driver)
        drop_database(pg_exec)
