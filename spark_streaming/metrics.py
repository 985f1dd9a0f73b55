"""Prometheus metrics of the streaming job, fed by a StreamingQueryListener and by the sink.

The listener receives each progress event as ONE JSON string (``progress().json()``) instead of
pyspark's default field-by-field conversion, which makes dozens of py4j round trips per event, some
of them class look-ups across every jar on the classpath: profiled with JFR at 1,000 ticks/s, that
conversion was about half of the Spark driver's CPU time (docs/STREAMING.md, "Trigger and batch sizing").

Names follow ``streaming_<thing>_<unit>``. The end-to-end latency histogram (tick ingest time to its
commit in PostgreSQL) is observed for every committed tick; its buckets are counted with numpy per batch
(a per-row ``observe`` would cost more than the batch's own maths at 20,000 ticks/s).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from pyspark.sql.streaming import StreamingQueryListener
from pyspark.sql.streaming.listener import (
    JStreamingQueryListener,
    QueryProgressEvent,
    StreamingQueryProgress,
)

from spark_streaming.sink import BatchOutcome

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


class LatencyHistogram(Collector):
    """A histogram fed with whole numpy arrays; exported as streaming_end_to_end_latency_seconds."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.edges = np.asarray(buckets, dtype=float)
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)
        self.total = 0.0
        self._lock = threading.Lock()

    def observe_many(self, seconds: np.ndarray) -> None:
        if seconds.size == 0:
            return
        idx = np.searchsorted(self.edges, seconds, side="left")
        counts = np.bincount(idx, minlength=len(self.edges) + 1)
        with self._lock:
            self.counts += counts
            self.total += float(seconds.sum())

    def collect(self):
        with self._lock:
            cumulative = np.cumsum(self.counts)
            total = self.total
        buckets = [(repr(float(e)), int(c)) for e, c in zip(self.edges, cumulative[:-1], strict=True)]
        buckets.append(("+Inf", int(cumulative[-1])))
        fam = HistogramMetricFamily(
            "streaming_end_to_end_latency_seconds",
            "Time from a tick's ingest_time to the commit of its batch in PostgreSQL.",
        )
        fam.add_metric([], buckets, total)
        yield fam


class StreamingMetrics:
    """All metrics of one job process, in their own registry (tests may build several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.input_rate = Gauge(
            "streaming_input_rows_per_second", "Rows per second read by the last batch.", registry=r
        )
        self.processed_rate = Gauge(
            "streaming_processed_rows_per_second", "Rows per second processed by the last batch.", registry=r
        )
        self.batch_duration = Gauge(
            "streaming_batch_duration_seconds", "Wall time of the last micro-batch.", registry=r
        )
        self.state_rows = Gauge(
            "streaming_state_rows", "Symbols with indicator state plus open bars.", registry=r
        )
        self.state_bytes = Gauge(
            "streaming_state_bytes", "Memory held by the indicator state cache.", registry=r
        )
        self.watermark_delay = Gauge(
            "streaming_watermark_delay_seconds",
            "Wall clock minus the query's event-time watermark.",
            registry=r,
        )
        self.kafka_lag = Gauge(
            "streaming_kafka_offsets_behind_latest",
            "Records between the last batch's end and the newest offset, in the partition furthest behind "
            "(Spark's maxOffsetsBehindLatest of the Kafka source).",
            registry=r,
        )
        self.committed_offset = Gauge(
            "streaming_kafka_committed_offset",
            "End offset of the last batch Spark committed, per Kafka partition: against the broker's "
            "kafka_log_logendoffset it is a lag that keeps growing while the job commits nothing.",
            ["topic", "partition"],
            registry=r,
        )
        self.heartbeat = Gauge(
            "streaming_heartbeat_timestamp_seconds",
            "Unix time of the last sign of life of the query (batch, progress or idle).",
            registry=r,
        )
        self.batches = Counter(
            "streaming_batches_total", "Micro-batches by outcome.", ["outcome"], registry=r
        )
        self.rows = Counter("streaming_rows_total", "Rows handled by kind.", ["kind"], registry=r)
        self.restarts = Counter(
            "streaming_query_restarts_total", "Query restarts after a failure.", registry=r
        )
        self.sink_seconds = Gauge(
            "streaming_sink_duration_seconds", "Sink transaction time of the last batch.", registry=r
        )
        self.latency = LatencyHistogram()
        r.register(self.latency)

    def serve(self, host: str, port: int) -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)
            log.info("event=metrics_serving host=%s port=%d", host, port)

    def record_batch(self, outcome: BatchOutcome) -> None:
        self.heartbeat.set(time.time())
        if outcome.skipped:
            self.batches.labels("skipped").inc()
            return
        self.batches.labels("committed").inc()
        self.sink_seconds.set(outcome.seconds)
        for kind, n in (
            ("tick", outcome.fresh_ticks),
            ("duplicate", outcome.duplicates),
            ("late", outcome.late),
            ("dead_letter", outcome.dead),
            ("refused_by_database", outcome.refused_by_database),
            ("bar", outcome.bars),
            ("signal", outcome.signals),
        ):
            if n:
                self.rows.labels(kind).inc(n)
        self.latency.observe_many(outcome.latencies_ms / 1000.0)


def committed_offsets(end_offset: object) -> list[tuple[str, str, int]]:
    """(topic, partition, offset) of a Kafka source's endOffset in a query progress (a JSON object
    {topic: {partition: offset}}, as text or parsed); nothing for other sources or shapes."""
    try:
        parsed = json.loads(end_offset) if isinstance(end_offset, str) else end_offset
    except ValueError:
        return []
    if not isinstance(parsed, dict):
        return []
    return [
        (str(topic), str(partition), int(offset))
        for topic, partitions in parsed.items()
        if isinstance(partitions, dict)
        for partition, offset in partitions.items()
        if isinstance(offset, int) and not isinstance(offset, bool)
    ]


class _JsonProgressBridge(JStreamingQueryListener):
    """pyspark's py4j bridge, but a progress event crosses as one JSON string (two py4j calls)."""

    def onQueryProgress(self, jevent) -> None:
        progress = StreamingQueryProgress.fromJson(json.loads(jevent.progress().json()))
        self.pylistener.onQueryProgress(QueryProgressEvent(progress))


class ProgressListener(StreamingQueryListener):
    """Copies each query progress into the gauges; idle events count as heartbeats."""

    @property
    def _jlistener(self):
        from pyspark import SparkContext

        if not hasattr(self, "_jlistenerobj"):
            self._jlistenerobj = SparkContext._jvm.PythonStreamingQueryListenerWrapper(  # type: ignore[union-attr]
                _JsonProgressBridge(self)
            )
        return self._jlistenerobj

    def __init__(
        self,
        metrics: StreamingMetrics,
        state: Callable[[], tuple[int, int, int | None]],
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.state = state
        self.on_idle = on_idle

    def onQueryStarted(self, event) -> None:
        log.info("event=query_started id=%s run_id=%s name=%s", event.id, event.runId, event.name)
        self.metrics.heartbeat.set(time.time())

    def onQueryProgress(self, event) -> None:
        p = event.progress
        m = self.metrics
        m.heartbeat.set(time.time())
        m.input_rate.set(p.inputRowsPerSecond or 0.0)
        m.processed_rate.set(p.processedRowsPerSecond or 0.0)
        m.batch_duration.set((p.batchDuration or 0) / 1000.0)
        behind = [
            float(source.metrics["maxOffsetsBehindLatest"])
            for source in p.sources or []
            if source.metrics and "maxOffsetsBehindLatest" in source.metrics
        ]
        if behind:
            m.kafka_lag.set(max(behind))
        for source in p.sources or []:
            for topic, partition, offset in committed_offsets(source.endOffset):
                m.committed_offset.labels(topic, partition).set(offset)
        rows, size, watermark_ms = self.state()
        m.state_rows.set(rows)
        m.state_bytes.set(size)
        if watermark_ms is not None:
            m.watermark_delay.set(max(0.0, time.time() - watermark_ms / 1000.0))

    def onQueryIdle(self, event) -> None:
        self.metrics.heartbeat.set(time.time())
        if self.on_idle is not None:
            self.on_idle()

    def onQueryTerminated(self, event) -> None:
        log.info("event=query_terminated id=%s exception=%s", event.id, (event.exception or "")[:300])
