"""Prototype of issue 13's design (a), the part of it that is sound: decode, validate and refuse (with
reason) on the executors; the driver collects already-parsed rows and hands them to the unchanged sink.

**Not the job's default** (docs/SCALING.md, "Work on the executors: measured" has the figures and why).
Run it with ``python -m spark_streaming.executor_parse`` (every ``STREAM_*`` setting as for the job).

How: the query's rows are ``kafka_records(source)`` without the ``coalesce`` (one task per Kafka
partition), then ``mapInArrow(parse_partition)``: on the executors' Python workers each partition's rows
go through :func:`spark_streaming.job.frames_from_records` (parse.py's rules, the very function the
driver runs in the default path: one rule in one place) and come out as at most three rows
``(dest, input_rows, frame)``, ``frame`` being the parsed ticks, bars or dead letters as an Arrow IPC
stream. The driver collects those few rows (``toArrow``, partitions in order, so rows keep the default
path's order) and concatenates them per destination. Everything after (dedup by ``raw.ticks``' primary
key, the late split, bars, indicators, the ledger, one transaction) is the default path's.

What is deliberately *not* here: pre-aggregating bars on the executors. Bars are computed from the ticks
``INSERT ... ON CONFLICT DO NOTHING`` really added, minus the ticks late against their symbol's state,
both decided on the driver inside the batch's transaction; a bar summed before that would count
duplicates and late ticks.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame

from common.contract import TOPICS
from common.settings import PROJECT_ROOT, postgres_settings
from spark_streaming.job import StreamingJob, build_session, frames_from_records, kafka_records
from spark_streaming.metrics import StreamingMetrics
from spark_streaming.parse import META
from spark_streaming.settings import StreamingSettings
from spark_streaming.shards import shard_settings
from spark_streaming.sink import BatchFrames

log = logging.getLogger(__name__)

DESTINATIONS = ("ticks", "bars", "dead")
PARSED_SCHEMA = "dest string, input_rows long, frame binary"
_OUT_SCHEMA = pa.schema([("dest", pa.string()), ("input_rows", pa.int64()), ("frame", pa.binary())])
_RECORD_COLUMNS = [*META, "key", "value"]
KAFKA_PARTITIONS = sum(spec.partitions for spec in TOPICS.values())
"""Partitions of the three topics together: the most Kafka partitions a query reads."""


def to_ipc(frame: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def parse_partition(batches: Iterator[pa.RecordBatch], s: StreamingSettings) -> Iterator[pa.RecordBatch]:
    """mapInArrow's function, on an executor: one partition's Kafka rows -> its parsed frames (one
    parse per partition, not per Arrow batch of it: fewer, larger frames)."""
    table = pa.Table.from_batches(list(batches))
    if table.num_rows == 0:
        return
    frames = frames_from_records(table.to_pandas(), s)
    parts = [(d, getattr(frames, d)) for d in DESTINATIONS if not getattr(frames, d).empty]
    parts = parts or [("ticks", frames.ticks)]  # every record goes somewhere; this keeps the count anyway
    yield pa.RecordBatch.from_pydict(
        {
            "dest": [d for d, _ in parts],
            "input_rows": [table.num_rows] + [0] * (len(parts) - 1),
            "frame": [to_ipc(f) for _, f in parts],
        },
        schema=_OUT_SCHEMA,
    )


def parsed_records(records: DataFrame, s: StreamingSettings) -> DataFrame:
    """`kafka_records` rows (one task per Kafka partition) parsed on the executors."""
    return records.mapInArrow(lambda batches: parse_partition(batches, s), PARSED_SCHEMA)


def frames_from_parsed(table: pa.Table, empty: BatchFrames) -> BatchFrames:
    """The collected `parsed_records` rows -> the batch's frames, as `frames_from_records` gives them."""
    dests = table.column("dest").to_pylist()
    blobs = table.column("frame").to_pylist()
    got: dict[str, list[pa.Table]] = {d: [] for d in DESTINATIONS}
    for dest, blob in zip(dests, blobs, strict=True):
        got[dest].append(pa.ipc.open_stream(blob).read_all())

    def frame(dest: str) -> pd.DataFrame:
        if not got[dest]:
            return getattr(empty, dest).copy()
        if len(got[dest]) == 1:
            return got[dest][0].to_pandas()
        return pa.concat_tables(got[dest], promote_options="permissive").to_pandas()

    return BatchFrames(
        ticks=frame("ticks"),
        bars=frame("bars"),
        dead=frame("dead"),
        input_rows=int(pc.sum(table.column("input_rows")).as_py() or 0),
    )


class ExecutorParseJob(StreamingJob):
    """The streaming job with parsing on the executors (prototype; see the module's docstring)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        empty = pd.DataFrame({c: pd.Series(dtype="int64") for c in META})
        empty["kafka_topic"] = empty["kafka_topic"].astype(object)
        empty["key"] = pd.Series(dtype=object)
        empty["value"] = pd.Series(dtype=object)
        self._empty = frames_from_records(empty[_RECORD_COLUMNS], self.settings)

    def stream_records(self, source: DataFrame) -> DataFrame:
        # one task per Kafka partition (a coalesce to at least the partitions read is none), so the
        # executors share the parsing; the default path reads through `collect_tasks` tasks, 1 by default
        return parsed_records(kafka_records(source, KAFKA_PARTITIONS), self.settings)

    def batch_frames(self, df: DataFrame) -> tuple[BatchFrames, dict[str, float]]:
        t0 = time.perf_counter()
        frames = frames_from_parsed(df.toArrow(), self._empty)
        # the parse ran on the executors, inside the collect
        return frames, {"collect": time.perf_counter() - t0, "parse": 0.0}


def run(settings: StreamingSettings | None = None) -> int:
    """`python -m spark_streaming.executor_parse`: the job's `run`, one query, with ExecutorParseJob."""
    s = shard_settings(settings or StreamingSettings())
    # the executors' Python workers unpickle parse_partition, so they need the project on their path: a
    # standalone cluster's workers do not inherit the driver's PYTHONPATH (local mode's do). Spark merges
    # this with its own entries. A deployment would ship the packages instead (--py-files or a wheel).
    os.environ.setdefault(
        "PYSPARK_SUBMIT_ARGS", f"--conf spark.executorEnv.PYTHONPATH={PROJECT_ROOT} pyspark-shell"
    )
    pg = postgres_settings()
    if s.database:
        pg = pg.model_copy(update={"database": s.database})
    metrics = StreamingMetrics()
    metrics.serve(s.metrics_host, s.metrics_port)
    spark = build_session(s)
    job = ExecutorParseJob(s, pg, metrics)

    def _signal(signum, _frame) -> None:
        log.info("event=signal signum=%d", signum)
        threading.Thread(target=job.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    log.info("event=job_starting parse=executors query=%s master=%s", s.query_name, s.master)
    try:
        return job.run_forever(spark)
    finally:
        job.close()
        job.sink.beat("stopped")
        job.sink.close()
        spark.stop()


if __name__ == "__main__":
    logging.basicConfig(level="INFO", format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    raise SystemExit(run())
