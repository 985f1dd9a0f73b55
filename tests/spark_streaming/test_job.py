"""The running job (real Kafka, Spark and PostgreSQL) on a fed series: TA-Lib values, signals, dead letters.

One job process serves the whole module: everything is produced to private topics first, then the job
reads them from the earliest offsets into a private database.
"""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest

from common.contract import DeadLetter, RejectReason, Stage, Topic, encode
from common.migrate import drop_database
from spark_streaming import indicators as ind
from spark_streaming.feed import delete_topics, tick_value
from tests.conftest import end_offsets, free_ports
from tests.spark_streaming.crafted import crafted
from tests.spark_streaming.helpers import (
    BAR_MS,
    JobProcess,
    bars_as_ticks,
    private_database,
    private_topics,
    produce,
    query,
    random_walk,
    wait_for,
)
from tests.spark_streaming.test_indicators import assert_equal_to_talib

pytestmark = pytest.mark.slow

N_IND = 300
TAG = uuid.uuid4().hex[:6].upper()
IND_SYMBOL = f"IND{TAG}"
DLV_SYMBOL = f"DLV{TAG}"


def _signal_symbol(kind: str, near: bool) -> str:
    return f"G{ind.SIGNAL_TYPES.index(kind):02d}{'N' if near else 'F'}{TAG}"


def _malformed(now: int) -> list[tuple[bytes, bytes, str]]:
    def tick(**over) -> bytes:
        d = {
            "schema_version": 1,
            "symbol": DLV_SYMBOL,
            "event_time_ms": now - 1000,
            "price": 5.0,
            "size": 1.0,
            "source": "synthetic",
            "ingest_time_ms": now,
        }
        d.update(over)
        return json.dumps({k: v for k, v in d.items() if v is not ...}).encode()

    key = DLV_SYMBOL.encode()
    return [
        (key, b'{"symbol": "' + key + b'", "price": ', RejectReason.MALFORMED_JSON),
        (key, b'"just a string"', RejectReason.NOT_AN_OBJECT),
        (key, tick(price=...), RejectReason.MISSING_FIELD),
        (key, tick(size="lots"), RejectReason.WRONG_TYPE),
        (key, tick(schema_version=7), RejectReason.UNSUPPORTED_SCHEMA_VERSION),
        (key, tick(price=0.0), RejectReason.NON_POSITIVE_PRICE),
        (b"OTHER", tick(), RejectReason.KEY_MISMATCH),
        (key, tick(event_time_ms=now + 3_600_000), RejectReason.FUTURE_TIME),
        (b"bad sym", tick(symbol="bad sym"), RejectReason.BAD_SYMBOL),
        (key, b"\xff\xfe\x00binary", RejectReason.MALFORMED_JSON),
    ]


@pytest.fixture(scope="module")
def fed_job(bootstrap_servers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream-job")
    topics = private_topics(bootstrap_servers, TAG.lower())
    pg = private_database(f"test_stream_job_{TAG.lower()}")
    now = int(time.time() * 1000)
    start = (now - 6 * 3_600_000) // BAR_MS * BAR_MS
    closes = random_walk(N_IND, 11)
    opens = np.concatenate([[closes[0]], closes[:-1]])
    items = bars_as_ticks(IND_SYMBOL, start, opens, closes, np.full(N_IND, 100.0), now)
    triggers = {}
    for kind in ind.SIGNAL_TYPES:
        for near in (False, True):
            o, c, v = crafted(kind, near_miss=near)
            items += bars_as_ticks(_signal_symbol(kind, near), start, o, c, v, now)
            triggers[kind] = start + (len(c) - 1) * BAR_MS
    # dead letters: malformed records between valid ticks of one symbol
    malformed = _malformed(now)
    dl_items, valid_dlv = [], 0
    for i, (key, value, _) in enumerate(malformed):
        dl_items.append((DLV_SYMBOL, tick_value(DLV_SYMBOL, now - 600_000 + i * 1000, 5.0 + i, 1.0, now)))
        valid_dlv += 1
        dl_items.append((key.decode("utf-8", "replace"), value))
    dl_items.append((DLV_SYMBOL, tick_value(DLV_SYMBOL, now - 300_000, 6.0, 1.0, now)))
    valid_dlv += 1
    # the clock: one late tick closes every fed bar
    items.append((f"CLK{TAG}", tick_value(f"CLK{TAG}", now - 60_000, 1.0, 1.0, now)))
    produce(bootstrap_servers, topics[Topic.TICKS], items)
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap_servers})
    for key, value in dl_items:
        p.produce(topics[Topic.TICKS], value=value, key=key.encode("utf-8", "replace") if key else None)
    letter = DeadLetter(
        reason=RejectReason.OVERSIZE,
        detail="too big",
        stage=Stage.INGEST,
        source="yahoo",
        topic=topics[Topic.TICKS],
        symbol="ZZZ",
        payload="{...}",
        failed_at_ms=now - 5000,
    )
    p.produce(topics[Topic.DEADLETTER], value=encode(letter), key=b"ZZZ")
    assert p.flush(30) == 0
    total = len(items) + len(dl_items) + 1

    metrics_port = free_ports(1)[0]
    job = JobProcess(tmp, topics, pg, metrics_port=metrics_port)
    started_at = time.time()
    job.start()
    try:
        wait_for(
            lambda: query(pg, "select coalesce(sum(input_rows), 0) from rt.stream_ledger")[0][0] >= total,
            240,
            "the job to consume every record",
        )
    except AssertionError:
        job.stop()
        raise AssertionError(job.log_tail()) from None
    yield {
        "pg": pg,
        "closes": closes,
        "triggers": triggers,
        "malformed": malformed,
        "valid_dlv": valid_dlv,
        "start": start,
        "topics": topics,
        "metrics_port": metrics_port,
        "records": total,
        "started_at": started_at,
    }
    job.stop()
    delete_topics(bootstrap_servers, topics.values())
    drop_database(pg)


def test_indicators_written_by_the_job_equal_talib_on_the_fed_series(fed_job):
    rows = query(
        fed_job["pg"],
        "select close, ema_12, ema_26, macd, macd_signal, macd_hist, rsi_14, sma_20, sma_50, sma_200 "
        "from rt.indicators_1m where symbol = %s and is_final order by bar_start",
        (IND_SYMBOL,),
    )
    assert len(rows) == N_IND
    arr = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
    np.testing.assert_array_equal(arr[:, 0], fed_job["closes"])
    names = ["ema_12", "ema_26", "macd", "macd_signal", "macd_hist", "rsi_14", "sma_20", "sma_50", "sma_200"]
    assert_equal_to_talib({n: arr[:, i + 1] for i, n in enumerate(names)}, fed_job["closes"])


def test_job_builds_final_one_minute_bars_from_the_ticks(fed_job):
    rows = query(
        fed_job["pg"],
        "select count(*), bool_and(is_final), min(open), max(trade_count) from rt.bars_1m where symbol = %s",
        (IND_SYMBOL,),
    )
    assert rows[0][0] == N_IND and rows[0][1] is True and rows[0][3] == 2


@pytest.mark.parametrize("kind", ind.SIGNAL_TYPES)
def test_job_fires_each_signal_on_its_crafted_series_and_not_on_the_near_miss(fed_job, kind):
    at = fed_job["triggers"][kind]
    fired = query(
        fed_job["pg"],
        "select symbol from rt.signals where signal_type = %s and "
        "signal_time = timestamptz 'epoch' + %s * interval '1 millisecond' and symbol in (%s, %s)",
        (kind, at, _signal_symbol(kind, False), _signal_symbol(kind, True)),
    )
    assert [r[0] for r in fired] == [_signal_symbol(kind, False)]


def test_malformed_messages_land_in_dead_letters_with_their_reason(fed_job):
    rows = query(
        fed_job["pg"],
        "select kafka_offset, reason, stage from raw.dead_letters where kafka_topic = %s "
        "order by kafka_offset",
        (fed_job["topics"][Topic.TICKS],),
    )
    assert sorted(r[1] for r in rows) == sorted(m[2].value for m in fed_job["malformed"])
    assert {r[2] for r in rows} == {"stream"}


def test_valid_ticks_around_malformed_ones_all_arrive(fed_job):
    rows = query(fed_job["pg"], "select count(*) from raw.ticks where symbol = %s", (DLV_SYMBOL,))
    assert rows[0][0] == fed_job["valid_dlv"]


def test_dead_letters_from_the_ingest_topic_are_landed_as_they_are(fed_job):
    rows = query(
        fed_job["pg"],
        "select stage, reason, source, symbol from raw.dead_letters where kafka_topic = %s",
        (fed_job["topics"][Topic.DEADLETTER],),
    )
    assert rows == [("ingest", "oversize", "yahoo", "ZZZ")]


def _scrape(port: int) -> dict[str, float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_job_exports_its_progress_and_latency_to_prometheus(fed_job, bootstrap_servers):
    """The StreamingQueryListener (progress events through one JSON string) and the sink feed the
    job's metrics endpoint: batch duration and rates from Spark's progress, latency from the sink."""
    pg, port = fed_job["pg"], fed_job["metrics_port"]

    def ledger() -> list[tuple[int, int, float]]:
        return query(
            pg,
            "select batch_id, input_rows, extract(epoch from committed_at) from rt.stream_ledger order by 1",
        )

    # Rows sent now, after the fed records were all consumed, make a batch that is not the query's
    # first (Spark reports 0 rows/s for a first batch: it has no previous trigger to measure from).
    before = sum(r[1] for r in ledger())
    sym, now = f"RATE{TAG}", int(time.time() * 1000)
    extra = [(sym, tick_value(sym, now - 20_000 + i, 10.0 + i, 1.0, now)) for i in range(40)]
    produce(bootstrap_servers, fed_job["topics"][Topic.TICKS], extra)
    wait_for(lambda: sum(r[1] for r in ledger()) == before + len(extra), 60, "the extra ticks")
    rows = ledger()
    last_id, last_rows, last_commit = rows[-1]
    assert last_id >= 1 and last_rows > 0
    # Spark's inputRowsPerSecond of batch L = rows(L) / (start(L) - start(L-1)), where start(L-1) came
    # after commit(L-2) (or the job's start) and start(L) before commit(L): the gauge is at least
    # rows(L) / (commit(L) - that time); and at most rows(L) / 1 ms (trigger starts are in ms).
    prev = float(rows[-3][2]) if len(rows) >= 3 else fed_job["started_at"]
    lowest = last_rows / (float(last_commit) - prev)

    def rate_of_last_batch() -> bool:
        return lowest <= _scrape(port)["streaming_input_rows_per_second{}"] <= last_rows * 1000

    try:
        wait_for(rate_of_last_batch, 30, "the input rate of the last batch", interval_s=0.5)
    except AssertionError:
        raise AssertionError(
            f"input rate {_scrape(port)['streaming_input_rows_per_second{}']} outside "
            f"[{lowest}, {last_rows * 1000}] for batch {last_id} of {last_rows} rows"
        ) from None
    m = _scrape(port)
    assert m["streaming_input_rows_per_second{}"] > 0
    assert m["streaming_batch_duration_seconds{}"] > 0
    assert m["streaming_processed_rows_per_second{}"] > 0
    assert time.time() - m["streaming_heartbeat_timestamp_seconds{}"] < 60
    assert m['streaming_batches_total{"outcome": "committed"}'] == len(rows)
    committed = query(pg, "select count(*) from raw.ticks")[0][0]
    assert m["streaming_end_to_end_latency_seconds_count{}"] == committed
    assert m["streaming_state_rows{}"] > 0
    # every record is consumed: the committed offset of each partition is the broker's end offset
    # (Prometheus computes the lag that moves while nothing commits from these two)
    for topic in (fed_job["topics"][Topic.TICKS], fed_job["topics"][Topic.DEADLETTER]):
        for partition, end in end_offsets(bootstrap_servers, topic).items():
            labels = json.dumps({"partition": str(partition), "topic": topic}, sort_keys=True)
            assert m[f"streaming_kafka_committed_offset{labels}"] == end, (topic, partition)
