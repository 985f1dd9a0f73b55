"""The job exports Kafka lag for the dashboard: Spark's maxOffsetsBehindLatest, the largest over sources.

The query keeps its offsets in its checkpoint, not in a consumer group, so the broker cannot tell the
lag; Spark's Kafka source reports it in every progress event. The event here is parsed by pyspark
from the JSON shape Spark sends (two Kafka sources, one of them far behind)."""

from __future__ import annotations

import uuid

from pyspark.sql.streaming.listener import QueryProgressEvent, StreamingQueryProgress

from spark_streaming.metrics import ProgressListener, StreamingMetrics


def _source(topic: str, behind: dict[str, str] | None) -> dict:
    source = {
        "description": f"KafkaV2[Subscribe[{topic}]]",
        "startOffset": {topic: {"0": 10}},
        "endOffset": {topic: {"0": 20}},
        "latestOffset": {topic: {"0": 20}},
        "numInputRows": 10,
        "inputRowsPerSecond": 5.0,
        "processedRowsPerSecond": 8.0,
    }
    if behind is not None:
        source["metrics"] = behind
    return source


def _progress(sources: list[dict]) -> QueryProgressEvent:
    return QueryProgressEvent(
        StreamingQueryProgress.fromJson(
            {
                "id": str(uuid.uuid4()),
                "runId": str(uuid.uuid4()),
                "name": "lag_test",
                "timestamp": "2026-11-30T01:00:00.000Z",
                "batchId": 3,
                "batchDuration": 250,
                "stateOperators": [],
                "sources": sources,
                "sink": {"description": "ForeachBatchSink", "numOutputRows": -1},
            }
        )
    )


def _lag(metrics: StreamingMetrics) -> float | None:
    return metrics.registry.get_sample_value("streaming_kafka_offsets_behind_latest")


def test_kafka_lag_gauge_is_the_largest_max_offsets_behind_latest_of_the_sources():
    metrics = StreamingMetrics()
    listener = ProgressListener(metrics, state=lambda: (0, 0, None))
    listener.onQueryProgress(
        _progress(
            [
                _source("ticks", {"minOffsetsBehindLatest": "0", "maxOffsetsBehindLatest": "1250"}),
                _source("bars", {"minOffsetsBehindLatest": "0", "maxOffsetsBehindLatest": "7"}),
            ]
        )
    )
    assert _lag(metrics) == 1250.0
    listener.onQueryProgress(_progress([_source("ticks", {"maxOffsetsBehindLatest": "0"})]))
    assert _lag(metrics) == 0.0
    # a progress without the metric (no new data read) leaves the last value
    listener.onQueryProgress(_progress([_source("ticks", None)]))
    assert _lag(metrics) == 0.0
