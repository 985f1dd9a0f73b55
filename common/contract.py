"""The Kafka message contract: topics, key, value schemas, units. The one source of truth.

Every producer (ingest) and consumer (spark_streaming, tests, tools) imports from here.

Wire format
-----------
- Key: the instrument symbol, upper case, UTF-8 bytes (``b"AAPL"``). One symbol's events stay in one
  partition and so stay ordered.
- Value: one JSON object, UTF-8, with an explicit integer ``schema_version`` (currently 1).
- Times: integers, UTC epoch **milliseconds**. ``event_time_ms`` is when the market event happened
  (trade / quote time, or the start of a bar); ``ingest_time_ms`` is when the ingest service read it.
- Prices: quote currency units per share/coin (float). Volumes and sizes: shares or coins (float,
  fractional for crypto).
- Dead letters: every record the pipeline refuses goes to ``market.deadletter.v1`` with its original
  bytes (text, or base64 when not UTF-8), a reason code from :class:`RejectReason`, the stage and
  source that refused it, and the time.

A consumer must refuse (dead-letter with ``unsupported_schema_version``) a ``schema_version`` it does
not know; additive, optional fields do not bump the version, anything else gets a new topic version.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
"""Largest value the pipeline accepts; anything larger is dead-lettered as ``oversize``."""

_DAY_MS = 24 * 3600 * 1000


class Topic(StrEnum):
    TICKS = "market.ticks.v1"
    BARS = "market.bars.v1"
    DEADLETTER = "market.deadletter.v1"


@dataclass(frozen=True)
class TopicSpec:
    name: Topic
    partitions: int
    retention_ms: int
    description: str
    cleanup_policy: str = "delete"

    def config(self) -> dict[str, str]:
        """Topic-level configuration given to the broker when the topic is created."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(MAX_MESSAGE_BYTES * 2),
            "min.insync.replicas": "1",
        }


TOPICS: dict[Topic, TopicSpec] = {
    Topic.TICKS: TopicSpec(Topic.TICKS, 6, 7 * _DAY_MS, "Trades/quotes, one message per tick."),
    Topic.BARS: TopicSpec(Topic.BARS, 3, 30 * _DAY_MS, "OHLCV bars (intraday and daily)."),
    Topic.DEADLETTER: TopicSpec(Topic.DEADLETTER, 1, 30 * _DAY_MS, "Refused records with their reason."),
}


class Source(StrEnum):
    """Where a record came from."""

    YAHOO = "yahoo"
    REPLAY = "replay"
    SYNTHETIC = "synthetic"


class Stage(StrEnum):
    """Which part of the pipeline refused a record."""

    INGEST = "ingest"
    STREAM = "stream"


class RejectReason(StrEnum):
    """Reason codes for dead letters. Stable strings: dashboards and tests group by them."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    OVERSIZE = "oversize"
    NON_FINITE = "non_finite"
    NON_POSITIVE_PRICE = "non_positive_price"
    NEGATIVE_VOLUME = "negative_volume"
    CROSSED_PRICES = "crossed_prices"
    FUTURE_TIME = "future_time"
    STALE_TIME = "stale_time"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    UNKNOWN_SYMBOL = "unknown_symbol"
    BAD_SYMBOL = "bad_symbol"
    KEY_MISMATCH = "key_mismatch"


class BarInterval(StrEnum):
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    D1 = "1d"

    @property
    def millis(self) -> int:
        return {
            "1m": 60_000,
            "5m": 300_000,
            "15m": 900_000,
            "30m": 1_800_000,
            "1h": 3_600_000,
            "1d": _DAY_MS,
        }[self.value]


SYMBOL_PATTERN = r"^\^?[A-Z0-9][A-Z0-9.\-=]{0,30}$"
"""Yahoo's symbol spelling, upper case: an optional leading ^ (indices), then letters, digits, . - =."""

Symbol = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        pattern=SYMBOL_PATTERN,
        description="Instrument symbol as Yahoo spells it, upper case (AAPL, BTC-USD, ^GSPC, EURUSD=X).",
    ),
]
EpochMs = Annotated[int, Field(ge=0, description="UTC epoch milliseconds.")]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="Contract version.")


class Tick(_Message):
    """One trade or quote update. Topic ``market.ticks.v1``, key = symbol."""

    symbol: Symbol
    event_time_ms: EpochMs = Field(description="Exchange time of the trade/quote, UTC epoch ms.")
    price: float = Field(description="Last trade price, quote currency per unit.")
    size: float = Field(description="Units traded in this tick (shares/coins); 0 for a quote.")
    bid: float | None = Field(default=None, description="Best bid, quote currency.")
    ask: float | None = Field(default=None, description="Best ask, quote currency.")
    day_volume: float | None = Field(
        default=None, description="Cumulative session volume as reported by the source, units."
    )
    currency: str | None = Field(default=None, max_length=8, description="ISO 4217 quote currency.")
    exchange: str | None = Field(default=None, max_length=16, description="Exchange code.")
    source: Source = Field(description="Which ingest source produced it.")
    ingest_time_ms: EpochMs = Field(description="When the ingest service read it, UTC epoch ms.")


class Bar(_Message):
    """One OHLCV bar. Topic ``market.bars.v1``, key = symbol."""

    symbol: Symbol
    interval: BarInterval = Field(description="Bar length.")
    event_time_ms: EpochMs = Field(description="Bar start (open time), UTC epoch ms.")
    open: float = Field(description="First trade price in the bar, quote currency.")
    high: float = Field(description="Highest trade price, quote currency.")
    low: float = Field(description="Lowest trade price, quote currency.")
    close: float = Field(description="Last trade price (unadjusted), quote currency.")
    adj_close: float | None = Field(
        default=None, description="Close adjusted for splits and dividends (daily bars)."
    )
    volume: float = Field(description="Units traded in the bar.")
    source: Source
    ingest_time_ms: EpochMs


class DeadLetter(_Message):
    """A refused record. Topic ``market.deadletter.v1``, key = symbol when known, else empty."""

    reason: RejectReason
    detail: str = Field(max_length=2000, description="Human-readable explanation with the value.")
    stage: Stage
    source: str = Field(max_length=64, description="Source name, or the topic read from.")
    topic: str = Field(description="The topic the record was meant for / read from.")
    symbol: str | None = Field(default=None, max_length=64)
    payload: str = Field(description="The original bytes: UTF-8 text, or base64 (see encoding).")
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    failed_at_ms: EpochMs = Field(description="When the record was refused, UTC epoch ms.")


MESSAGE_TYPES: dict[Topic, type[_Message]] = {
    Topic.TICKS: Tick,
    Topic.BARS: Bar,
    Topic.DEADLETTER: DeadLetter,
}


def message_key(symbol: str | None) -> bytes:
    """The Kafka key for a record: the symbol as UTF-8 (empty for a dead letter with no symbol)."""
    return (symbol or "").encode("utf-8")


def encode(message: _Message) -> bytes:
    """Serialise a contract message to its wire value (compact JSON, UTF-8)."""
    return message.model_dump_json(exclude_none=True).encode("utf-8")


def decode(topic: Topic | str, value: bytes) -> _Message:
    """Parse and validate a wire value for `topic`; raises pydantic.ValidationError or ValueError."""
    return MESSAGE_TYPES[Topic(topic)].model_validate_json(value)


def payload_text(raw: bytes) -> tuple[str, Literal["utf-8", "base64"]]:
    """Represent original bytes for a dead letter: text when valid UTF-8, else base64."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def json_schema(topic: Topic | str) -> dict[str, Any]:
    """JSON Schema of one topic's value, for documentation and external consumers."""
    return MESSAGE_TYPES[Topic(topic)].model_json_schema()


def field_names(topic: Topic | str) -> list[str]:
    return list(MESSAGE_TYPES[Topic(topic)].model_fields)


if __name__ == "__main__":  # pragma: no cover - documentation helper
    for t in Topic:
        print(json.dumps({"topic": t.value, "schema": json_schema(t)}, indent=2))
