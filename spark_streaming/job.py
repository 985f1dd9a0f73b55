"""The streaming query: Kafka (ticks, bars, dead letters) -> parse/validate -> exactly-once PostgreSQL sink.

Spark does the reading and the parsing (one projection per batch, JVM-side JSON); the batch comes to
the driver through Arrow and :class:`~spark_streaming.sink.PostgresSink` lands it, keeping indicator
state in the sink transaction (see docs/STREAMING.md for why, with the measurements). A failed query is
restarted from its checkpoint with backoff; database outages are retried inside the batch first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import psycopg2
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from common.db import DatabaseUnavailable
from common.settings import PostgresSettings, contract_settings, kafka_settings, postgres_settings
from spark_streaming import indicators as ind
from spark_streaming.checkpoint import batch_range, last_committed_batch
from spark_streaming.jvm import HADOOP_LOCAL_FS, NIO_LOCAL_FS, nio_local_fs_jar
from spark_streaming.letters import rejected_letters
from spark_streaming.metrics import ProgressListener, StreamingMetrics
from spark_streaming.parse import parse_bars, parse_deadletters, parse_ticks
from spark_streaming.pipeline import SinkPipeline
from spark_streaming.settings import StreamingSettings
from spark_streaming.shards import shard_settings, source_option
from spark_streaming.sink import BatchFrames, BatchOutcome, PostgresSink

log = logging.getLogger(__name__)


def build_session(s: StreamingSettings) -> SparkSession:
    """A Spark session with the Kafka connector jars and the settings measured to keep batches short."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    jars = sorted(str(p) for p in s.jars_dir.glob("*.jar"))
    if not jars:
        raise FileNotFoundError(f"no Spark jars in {s.jars_dir}: run `make jars`")
    builder = (
        SparkSession.builder.master(s.master)
        .appName(f"spark_streaming:{s.query_name}")
        .config("spark.jars", ",".join(jars))
        .config("spark.driver.memory", s.driver_memory)
        # the same session on local[N] and on a standalone cluster (STREAM_MASTER=spark://...)
        .config("spark.driver.host", s.driver_host)
        .config("spark.driver.bindAddress", s.driver_host)
        .config("spark.executor.memory", s.executor_memory)
        .config("spark.cores.max", str(s.cores_max))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(s.shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.streaming.metricsEnabled", "true")
        .config("spark.sql.adaptive.enabled", "false")
        .config(
            "spark.sql.streaming.checkpointFileManagerClass",
            "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager",
        )
        .config("spark.sql.session.timeZone", "UTC")
    )
    fs_jar = nio_local_fs_jar(s.jars_dir.parent / "spark-local") if s.checkpoint_fs == "nio" else None
    if fs_jar is not None:  # checkpoint files without a forked chmod each (spark_streaming/jvm.py)
        # on the executors' class path too: the Hadoop setting reaches them (a standalone cluster's
        # workers on this machine; a missing class-path entry is ignored)
        builder = builder.config("spark.driver.extraClassPath", str(fs_jar))
        builder = builder.config("spark.executor.extraClassPath", str(fs_jar))
    builder = builder.config("spark.hadoop.fs.file.impl", NIO_LOCAL_FS if fs_jar else HADOOP_LOCAL_FS)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _split_topics(records: pd.DataFrame, topics: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """The batch's rows by topic; a batch is usually all ticks, which then costs no copy."""
    names = records["kafka_topic"].to_numpy(object)
    out = {}
    for t in topics:
        mask = names == t
        out[t] = records if mask.all() else records[mask]
    return out


_EMPTY_PARSES: dict[Callable, tuple[pd.DataFrame, pd.DataFrame]] = {}


def _parse_topic(parse: Callable, records: pd.DataFrame, *args) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`parse(records, *args)`; an empty topic reuses the (copied) result of parsing nothing."""
    if not records.empty:
        return parse(records, *args)
    if parse not in _EMPTY_PARSES:
        _EMPTY_PARSES[parse] = parse(records, *args)
    valid, refused = _EMPTY_PARSES[parse]
    return valid.copy(), refused.copy()


def frames_from_records(records: pd.DataFrame, s: StreamingSettings) -> BatchFrames:
    """Raw Kafka rows (META, key, value) of the three topics -> parsed frames by destination."""
    by_topic = _split_topics(records, (s.ticks_topic, s.bars_topic, s.deadletter_topic))
    tolerance = contract_settings().future_tolerance_ms
    ticks, bad_ticks = _parse_topic(parse_ticks, by_topic[s.ticks_topic], tolerance)
    bars, bad_bars = _parse_topic(parse_bars, by_topic[s.bars_topic], tolerance)
    letters, bad_letters = _parse_topic(parse_deadletters, by_topic[s.deadletter_topic])
    from_topic = pd.DataFrame(
        {
            "failed_at_ms": letters["failed_at_ms"].to_numpy(),
            "kafka_topic": letters["kafka_topic"].to_numpy(),
            "kafka_partition": letters["kafka_partition"].to_numpy(),
            "kafka_offset": letters["kafka_offset"].to_numpy(),
            "stage": letters["stage"].to_numpy(),
            "reason": letters["reason"].to_numpy(),
            "detail": letters["detail"].to_numpy(),
            "source": letters["source"].to_numpy(),
            "intended_topic": letters["topic"].to_numpy(),
            "symbol": letters["symbol"].to_numpy(),
            "payload": letters["payload"].to_numpy(),
            "payload_encoding": letters["payload_encoding"].fillna("utf-8").to_numpy(),
        }
    )
    refused = [x for x in (bad_ticks, bad_bars, bad_letters) if not x.empty]
    parts = [
        x
        for x in (from_topic, rejected_letters(pd.concat(refused, ignore_index=True)) if refused else None)
        if x is not None and not x.empty
    ]
    dead = pd.concat(parts, ignore_index=True) if parts else from_topic
    return BatchFrames(ticks=ticks, bars=bars, dead=dead, input_rows=len(records))


def kafka_records(df: DataFrame, tasks: int = 1) -> DataFrame:
    """The Kafka source's rows as the handler reads them (META, key, value), read by `tasks` tasks
    (coalesce: no shuffle). The stream applies this once, in its query's plan: built in the handler it
    cost a plan analysis per batch (22 ms of py4j and analysis at 1,000 ticks/s, docs/STREAMING.md)."""
    return df.select(
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.unix_millis(F.col("timestamp")).alias("kafka_ms"),
        "key",
        "value",
    ).coalesce(tasks)


def collect_records(records: DataFrame) -> pd.DataFrame:
    """A micro-batch of `kafka_records` rows on the driver, through Arrow."""
    return records.toArrow().to_pandas()


def read_query_id(checkpoint_dir) -> str:
    """The query id Spark keeps in the checkpoint's metadata file (stable across restarts)."""
    return json.loads((checkpoint_dir / "metadata").read_text().splitlines()[0])["id"]


_DB_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError, DatabaseUnavailable)


@dataclass
class StreamingJob:
    settings: StreamingSettings
    pg: PostgresSettings
    metrics: StreamingMetrics

    def __post_init__(self) -> None:
        s = self.settings
        self.sink = PostgresSink(
            self.pg,
            s.query_name,
            lambda: read_query_id(s.checkpoint_dir),
            s.allowed_lateness_ms,
            s.idle_close_ms,
            ind.SignalThresholds(zscore=s.zscore_threshold, gap_pct=s.gap_pct),
            database=s.database,
        )
        self.outcomes: list[BatchOutcome] = []
        self.keep_outcomes = False
        self._stop = threading.Event()
        self._query = None
        self._last_beat = 0.0
        self._pipeline = SinkPipeline()

    # --- the foreachBatch function --------------------------------------------------------------
    def handle_batch(self, df: DataFrame, batch_id: int) -> None:
        s = self.settings
        frames, steps = self.batch_frames(df)
        t = time.perf_counter()
        # the previous batch must be in PostgreSQL before Spark may commit this one (pipeline.py)
        self._pipeline.wait()
        steps["wait_previous"] = time.perf_counter() - t
        if frames.input_rows >= s.pipeline_min_rows:  # a big batch: written while Spark reads the next
            self._pipeline.submit(lambda: self._write_and_record(batch_id, frames, steps))
        else:
            self._write_and_record(batch_id, frames, steps)

    def _write_and_record(self, batch_id: int, frames: BatchFrames, steps: dict[str, float]) -> None:
        t = time.perf_counter()
        outcome = self._write_with_retry(batch_id, frames)
        outcome.steps = {**steps, **outcome.steps}
        log.info(
            "event=batch_timing batch_id=%d rows=%d collect_s=%.3f parse_s=%.3f sink_s=%.3f",
            batch_id,
            frames.input_rows,
            steps["collect"],
            steps["parse"],
            time.perf_counter() - t,
        )
        self.metrics.record_batch(outcome)
        if self.keep_outcomes:
            self.outcomes.append(outcome)

    def close(self) -> None:
        """Finish the batch in flight and stop the writer thread."""
        self._pipeline.close()

    def _write_with_retry(self, batch_id: int, frames: BatchFrames) -> BatchOutcome:
        @retry(
            retry=retry_if_exception_type(_DB_ERRORS),
            wait=wait_exponential(multiplier=0.5, max=5.0),
            stop=stop_after_delay(120),
            reraise=True,
            before_sleep=lambda rs: log.warning(
                "event=sink_retry batch_id=%d attempt=%d error=%s",
                batch_id,
                rs.attempt_number,
                str(rs.outcome.exception()).strip().splitlines()[0] if rs.outcome else "",
            ),
        )
        def attempt() -> BatchOutcome:
            return self.sink.write(batch_id, frames)

        return attempt()

    def _state(self) -> tuple[int, int, int | None]:
        return self.sink.state_rows(), self.sink.state_bytes(), self.sink.watermark_ms()

    def _idle(self) -> None:
        now = time.monotonic()
        if now - self._last_beat >= self.settings.heartbeat_interval_s:
            self._last_beat = now
            self.sink.beat("idle")

    # --- the query ------------------------------------------------------------------------------
    def stream_records(self, source: DataFrame) -> DataFrame:
        """The streaming DataFrame the query writes: the Kafka rows shaped once, in the query's plan."""
        return kafka_records(source, self.settings.collect_tasks)

    def batch_records(self, df: DataFrame) -> pd.DataFrame:
        """A micro-batch of `stream_records` on the driver."""
        return collect_records(df)

    def batch_frames(self, df: DataFrame) -> tuple[BatchFrames, dict[str, float]]:
        """A micro-batch of `stream_records` as parsed frames, and the seconds each step took."""
        t0 = time.perf_counter()
        records = self.batch_records(df)
        t1 = time.perf_counter()
        frames = frames_from_records(records, self.settings)
        return frames, {"collect": t1 - t0, "parse": time.perf_counter() - t1}

    def start(self, spark: SparkSession):
        s = self.settings
        s.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        reader = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", kafka_settings().bootstrap_servers)
            .option(*source_option(s))  # subscribe; with shards, assign this shard's partitions
            .option("startingOffsets", s.starting_offsets)
            .option("maxOffsetsPerTrigger", str(s.max_offsets_per_trigger))
            .option("failOnDataLoss", "false")
            .option("kafka.fetch.min.bytes", "1")
            .option("kafka.fetch.max.wait.ms", str(s.kafka_fetch_max_wait_ms))
        )
        if s.kafka_min_partitions:
            reader = reader.option("minPartitions", str(s.kafka_min_partitions))
        records = self.stream_records(reader.load())
        writer = (
            records.writeStream.queryName(s.query_name)
            .foreachBatch(self.handle_batch)
            .option("checkpointLocation", str(s.checkpoint_dir))
            .trigger(processingTime=s.trigger_interval)
        )
        self._query = writer.start()
        return self._query

    def stop(self) -> None:
        self._stop.set()
        if self._query is not None:
            try:
                self._query.stop()
            except Exception as exc:
                log.warning("event=query_stop_failed error=%s", exc)

    def run_forever(self, spark: SparkSession) -> int:
        """Run the query, restarting it from its checkpoint after failures, until stop() or a signal."""
        # one listener per run, removed when it ends: a session that runs several jobs in turn (the
        # benchmark) would otherwise call every earlier job's listener for each later batch
        listener = ProgressListener(self.metrics, self._state, self._idle)
        spark.streams.addListener(listener)
        try:
            return self._run_queries(spark)
        finally:
            with contextlib.suppress(Exception):
                spark.streams.removeListener(listener)

    def _run_queries(self, spark: SparkSession) -> int:
        s = self.settings
        restarts, backoff = 0, s.restart_backoff_s
        while not self._stop.is_set():
            try:
                self.replay_uncommitted(spark)
                query = self.start(spark)
                query.awaitTermination()
                if self._stop.is_set() or query.exception() is None:
                    return 0
            except Exception as exc:
                if self._stop.is_set():
                    return 0
                log.error("event=query_failed error=%s", str(exc).strip().splitlines()[0][:500])
            finally:
                self._pipeline.drain()  # a stop commits the batch in flight; a failed one is replayed next
            self.sink.reset()
            restarts += 1
            self.metrics.restarts.inc()
            if s.max_restarts and restarts > s.max_restarts:
                log.error("event=giving_up restarts=%d", restarts)
                return 1
            log.info("event=query_restarting in_s=%.1f restarts=%d", backoff, restarts)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, s.restart_backoff_max_s)
        return 0

    def replay_uncommitted(self, spark: SparkSession) -> int | None:
        """Write the newest batch Spark committed if PostgreSQL's ledger lacks it, reading its offsets
        again from Kafka: the job died while that batch was in flight (spark_streaming/pipeline.py).
        Returns the batch id replayed, or None."""
        s = self.settings
        batch_id = last_committed_batch(s.checkpoint_dir)
        if batch_id is None or self.sink.committed(batch_id):
            return None
        batch = batch_range(s.checkpoint_dir, batch_id)
        log.warning(
            "event=batch_replaying batch_id=%d reason=committed_by_spark_not_in_ledger from=%s to=%s",
            batch_id,
            batch.starting_json(),
            batch.ending_json(),
        )
        df = (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", kafka_settings().bootstrap_servers)
            .option("assign", batch.assign_json())
            .option("startingOffsets", batch.starting_json())
            .option("endingOffsets", batch.ending_json())
            .option("failOnDataLoss", "false")
            .load()
        )
        frames, steps = self.batch_frames(self.stream_records(df))
        self._write_and_record(batch_id, frames, steps)
        return batch_id


def run(settings: StreamingSettings | None = None) -> int:
    """Entry point of `python -m spark_streaming run`: serve metrics, run until SIGTERM/SIGINT."""
    s = settings or StreamingSettings()
    if s.shards > 1 and s.shard is None:  # every shard's query in this one application
        from spark_streaming.shard_runner import run_in_one_application

        return run_in_one_application(s)
    s = shard_settings(s)
    pg = postgres_settings()
    if s.database:
        pg = pg.model_copy(update={"database": s.database})
    metrics = StreamingMetrics()
    metrics.serve(s.metrics_host, s.metrics_port)
    spark = build_session(s)
    job = StreamingJob(s, pg, metrics)

    def _signal(signum, _frame) -> None:
        log.info("event=signal signum=%d", signum)
        threading.Thread(target=job.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    log.info(
        "event=job_starting query=%s master=%s checkpoint=%s topics=%s,%s,%s database=%s",
        s.query_name,
        s.master,
        s.checkpoint_dir,
        s.ticks_topic,
        s.bars_topic,
        s.deadletter_topic,
        pg.database,
    )
    try:
        return job.run_forever(spark)
    finally:
        job.close()
        job.sink.beat("stopped")
        job.sink.close()
        spark.stop()
