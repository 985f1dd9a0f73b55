"""Prometheus metrics of the ingest service (names ``ingest_<thing>_<unit>``, counters end in _total)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from ingest.errors import MetricsPortTaken

log = logging.getLogger("ingest.metrics")

RECORDS_IN = Counter("ingest_records_in_total", "Records read from a source.", ["source", "topic"])
RECORDS_OUT = Counter(
    "ingest_records_out_total",
    "Records acknowledged by Kafka (delivered) or given up (failed), by the topic written to.",
    ["source", "topic", "outcome"],
)
REJECTIONS = Counter("ingest_rejections_total", "Records refused by validation.", ["source", "reason"])
PRODUCE_LATENCY = Histogram(
    "ingest_produce_latency_seconds",
    "Time from produce() to the broker's acknowledgement (sampled 1 in 16).",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BACKPRESSURE = Counter(
    "ingest_producer_backpressure_total", "Times produce() found the local queue full and waited."
)
SOURCE_ERRORS = Counter("ingest_source_errors_total", "Errors raised by a source.", ["source", "kind"])
RATE_LIMIT_WAITS = Counter(
    "ingest_rate_limiter_waits_total", "Calls that had to wait for the limiter.", ["name"]
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "ingest_rate_limiter_wait_seconds_total", "Seconds spent waiting for the rate limiter.", ["name"]
)
BREAKER_STATE = Gauge(
    "ingest_circuit_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", ["name"]
)
SPILLED = Counter(
    "ingest_spilled_records_total",
    "Records Kafka did not acknowledge (delivery failed or still pending at shutdown), kept in the spill.",
    ["topic"],
)
SPILL_RESENT = Counter(
    "ingest_spill_resent_records_total",
    "Records re-sent from the spill and acknowledged by Kafka.",
    ["topic"],
)
SPILL_PENDING = Gauge(
    "ingest_spill_pending_records",
    "Records in spill files this process wrote or is re-sending, not yet acknowledged by Kafka.",
)
RETRIES = Counter("ingest_retries_total", "Retried calls to a source.", ["name", "error"])


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose the metrics on http://host:port/metrics (no-op when port is 0).

    Raises MetricsPortTaken when the port is in use (another ingest process, most likely).
    """
    if not port:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise MetricsPortTaken(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}): another ingest process may "
            "be running; pass --metrics-port 0 to turn metrics off, or another port"
        ) from exc
    log.info("event=metrics_listening host=%s port=%d", host, port)
