"""Settings of the streaming job (env prefix ``STREAM_``, read from the environment and `.env`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.contract import Topic
from common.settings import PROJECT_ROOT, stack_settings


class StreamingSettings(BaseSettings):
    """Everything the streaming job can be told; each field is also a ``STREAM_<NAME>`` variable."""

    model_config = SettingsConfigDict(
        env_prefix="STREAM_", env_file=PROJECT_ROOT / ".env", env_file_encoding="utf-8", extra="ignore"
    )

    query_name: str = Field(default="market_stream", description="Streaming query name (ledger, heartbeat).")
    master: str = Field(default="local[2]", description="Spark master URL.")
    ticks_topic: str = Topic.TICKS.value
    bars_topic: str = Topic.BARS.value
    deadletter_topic: str = Topic.DEADLETTER.value
    starting_offsets: str = Field(
        default="latest", description="Kafka startingOffsets for a new checkpoint: latest, earliest or JSON."
    )
    checkpoint_dir: Path = Field(
        default_factory=lambda: stack_settings().state_dir / "checkpoints" / "market_stream",
        description="Spark checkpoint folder of the query.",
    )
    shards: int = Field(
        default=1,
        ge=1,
        description="Queries the input is split into (issue 13): shard i reads the partitions p with "
        "p % shards == i of each topic (Kafka `assign`), under the query name and checkpoint folder with "
        "-s<i>of<shards> added and the metrics port plus i * shard_port_step. 1: `subscribe`, as before.",
    )
    shard: int | None = Field(
        default=None,
        ge=0,
        description="The shard this process runs (0..shards-1); unset with shards > 1: every shard's query "
        "in this one Spark application (spark_streaming/shards.py).",
    )
    shard_port_step: int = Field(
        default=100, ge=1, description="Metrics port distance between shards (9109, 9209, ...)."
    )
    database: str | None = Field(default=None, description="PostgreSQL database; default PG_DATABASE.")
    jars_dir: Path = Field(default_factory=lambda: stack_settings().jars_dir / "spark")

    trigger_interval: str = Field(default="0 seconds", description="Micro-batch trigger (processingTime).")
    max_offsets_per_trigger: int = Field(default=50_000, description="Upper bound of records per batch.")
    shuffle_partitions: int = Field(default=2, description="Frozen into the checkpoint at the first run.")
    kafka_fetch_max_wait_ms: int = Field(
        default=0,
        ge=0,
        description="Kafka source's kafka.fetch.max.wait.ms: how long the broker may hold a fetch for "
        "fetch.min.bytes (1). Spark's consumer prefetches after each batch and its offset look-ups queue "
        "behind that fetch, so every millisecond here is waited per partition per batch; 0 answers at once "
        "(docs/STREAMING.md, 'Kafka wait', measured without extra broker CPU).",
    )
    kafka_min_partitions: int | None = Field(
        default=None,
        ge=1,
        description="Kafka source's minPartitions (None: one Spark input partition per Kafka partition). "
        "The batch is still collected by one task (coalesce(1)).",
    )
    collect_tasks: int = Field(
        default=1,
        ge=1,
        description="Spark tasks that read a batch's Kafka partitions for the driver (coalesce; the "
        "ticks topic has 6 partitions, read one after another by one task).",
    )
    pipeline_min_rows: int = Field(
        default=10_000,
        ge=0,
        description="A batch of at least this many records is written to PostgreSQL on a background "
        "thread while Spark reads the next one (one batch in flight; a batch Spark committed that the "
        "ledger lacks is replayed from Kafka at the next start: spark_streaming/pipeline.py). Smaller "
        "batches are written before Spark commits them. 0: every batch. Measured on 2 cores "
        "(docs/STREAMING.md): the overlap drains a backlog 1.6x faster but adds latency to the small "
        "batches of a steady feed, whose parts then compete for the cores.",
    )
    driver_memory: str = "1g"
    driver_host: str = Field(default="127.0.0.1", description="Address the driver binds and executors call.")
    executor_memory: str = Field(default="512m", description="Per executor, on a standalone cluster.")
    cores_max: int = Field(default=2, description="Cores the job takes from a standalone cluster.")
    checkpoint_fs: Literal["nio", "hadoop"] = Field(
        default="nio",
        description="Local file system of the checkpoint: 'nio' sets file permissions through java.nio "
        "(spark_streaming/jvm.py, built with the JDK's javac), 'hadoop' is Hadoop's RawLocalFileSystem, "
        "which forks chmod for every checkpoint file without Hadoop's native library.",
    )

    allowed_lateness_ms: int = Field(
        default=5_000,
        description="How far behind its own symbol's newest event a tick may arrive and still count; "
        "a symbol's bar closes once its newest event is this far past the bar's end. (The future "
        "tolerance is the contract's, shared with ingest: CONTRACT_FUTURE_TOLERANCE_MS.)",
    )
    idle_close_ms: int = Field(
        default=120_000,
        description="An idle symbol's open bars close once the newest event of the whole query is this "
        "far past their end (bounds state; must stay well above the allowed lateness).",
    )
    zscore_threshold: float = 3.0
    gap_pct: float = 0.005

    metrics_port: int = Field(default=9109, description="Prometheus endpoint port; 0 disables it.")
    metrics_host: str = "127.0.0.1"
    heartbeat_interval_s: float = Field(default=5.0, description="How often the heartbeat row is refreshed.")
    restart_backoff_s: float = Field(default=2.0, description="First wait before restarting a failed query.")
    restart_backoff_max_s: float = 30.0
    max_restarts: int = Field(default=0, description="Give up after this many restarts in a row; 0 = never.")
