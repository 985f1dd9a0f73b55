"""Settings of the ingest service (env prefix ``INGEST_``, read from the environment and `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.settings import PROJECT_ROOT, stack_settings

DEFAULT_INSTRUMENTS = Path(__file__).resolve().parent / "instruments.csv"
DEFAULT_METRICS_PORT = 9108
"""Where Prometheus scrapes the ingest service (monitoring/prometheus.yml)."""


class IngestSettings(BaseSettings):
    """Everything the ingest service can be told; each field is also an ``INGEST_<NAME>`` variable."""

    model_config = SettingsConfigDict(
        env_prefix="INGEST_", env_file=PROJECT_ROOT / ".env", env_file_encoding="utf-8", extra="ignore"
    )

    instruments_file: Path = Field(
        default=DEFAULT_INSTRUMENTS, description="CSV of known instruments (symbol, asset_class, ...)."
    )
    metrics_port: int = Field(
        default=DEFAULT_METRICS_PORT,
        description="Port of the Prometheus endpoint of the long-running commands (stream, synthetic, "
        "replay); 0 disables it. `backfill` serves metrics only when this or --metrics-port is set.",
    )
    metrics_host: str = "127.0.0.1"

    # validation
    # (the future-time tolerance is the contract's, shared with the stream: CONTRACT_FUTURE_TOLERANCE_MS)
    max_age_ms: int = Field(
        default=24 * 3600 * 1000, description="Oldest allowed live event (ticks); backfills ignore it."
    )
    allowed_lateness_ms: int = Field(
        default=60_000, description="How far behind the newest event of a symbol a record may arrive."
    )
    dedupe_window_ms: int = Field(
        default=300_000, description="How long a (symbol, event time) is remembered to spot duplicates."
    )
    accept_unknown_symbols: bool = Field(
        default=False, description="Accept symbols that are not in the instruments file."
    )

    # producer
    linger_ms: int = 20
    compression: str = "lz4"
    batch_size_bytes: int = Field(
        default=100_000,
        description="Producer batch size; must stay under the topics' max.message.bytes (128 KiB).",
    )
    queue_max_messages: int = 500_000
    delivery_timeout_ms: int = Field(
        default=300_000, description="How long the producer keeps retrying a record (broker outages)."
    )

    # the spill: records Kafka did not acknowledge in time are kept here and re-sent at the next start
    spill_dir: Path = Field(
        default_factory=lambda: stack_settings().state_dir / "ingest" / "spill",
        description="Folder of the spill files (one sub-folder per Kafka bootstrap address).",
    )
    spill_fsync_records: int = Field(
        default=1_000, description="fsync the spill file at least every this many spilled records."
    )
    spill_fsync_interval_s: float = Field(
        default=1.0, description="... and at least this often (seconds) while records are being spilled."
    )

    # yahoo
    yahoo_stream_url: str = "wss://streamer.finance.yahoo.com/?version=2"
    yahoo_requests_per_minute: int = Field(default=60, description="Rate limit for Yahoo history calls.")
    yahoo_retry_attempts: int = 5
    yahoo_retry_max_wait_s: float = 60.0
    yahoo_timeout_s: float = 30.0
    breaker_fail_max: int = Field(default=5, description="Failures in a row that open the breaker.")
    breaker_reset_s: float = Field(default=60.0, description="Seconds the breaker stays open before a probe.")


@lru_cache
def ingest_settings() -> IngestSettings:
    return IngestSettings()
