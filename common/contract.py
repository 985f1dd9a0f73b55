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
import math
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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

    def config(self, brokers: int = 1) -> dict[str, str]:
        """Topic-level configuration given to the broker when the topic is created on a cluster of
        `brokers` nodes (see :func:`replication`)."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(MAX_MESSAGE_BYTES * 2),
            "min.insync.replicas": str(replication(brokers).min_insync_replicas),
        }


@dataclass(frozen=True)
class Replication:
    factor: int
    min_insync_replicas: int


def replication(brokers: int) -> Replication:
    """How every topic is replicated on a cluster of `brokers` nodes: up to 3 copies, all but one of
    which must have a write before it is acknowledged (at least 1). On 3 brokers: 3 copies, 2 in sync,
    so with the producer's acks=all one broker may die without losing an acknowledged record or
    stopping writes. On 1 broker: 1 copy, 1 in sync."""
    if brokers < 1:
        raise ValueError(f"a Kafka cluster has at least 1 broker, got {brokers}")
    factor = min(3, brokers)
    return Replication(factor=factor, min_insync_replicas=max(1, factor - 1))


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
    OUT_OF_RANGE = "out_of_range"
    BAD_TEXT = "bad_text"
    REJECTED_BY_DATABASE = "rejected_by_database"


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
"""Yahoo's symbol spelling, upper case: an optional leading ^ (indices), then letters, digits, . - =.
Matched against the whole value (``fullmatch``: Python's ``$`` alone would also take "AAPL\\n")."""
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)

MAX_PRICE = 1e12
"""Largest price any instrument is quoted at, quote currency (BTC in Indonesian rupiah is about 1e9)."""
MIN_PRICE = 1e-10
"""Smallest positive price (the smallest crypto quotes are about 1e-8)."""
MAX_VOLUME = 1e18
"""Largest size or volume, units (a day of the most traded meme coins is about 1e14)."""
MAX_EPOCH_MS = 4_102_444_800_000
"""2100-01-01T00:00:00Z: no time in the contract is later."""
MIN_INGEST_MS = 1_577_836_800_000
"""2020-01-01T00:00:00Z: the ingest service's clock is never earlier (an ingest time of 0 would put a
54-year sample into the latency histogram)."""

IDENTIFIER_FORBIDDEN = r"\x00-\x1f\x7f-\x9f\ud800-\udfff"
"""Characters no short text field (currency, exchange, source, topic) may hold: C0 and C1 control
characters and lone surrogates (JSON can spell them, PostgreSQL cannot store NUL or a lone surrogate).
A regular-expression character class body, read alike by Python and JSON Schema (ECMAScript) engines."""
FREE_TEXT_FORBIDDEN = r"\x00\ud800-\udfff"
"""Characters no free-text field (a dead letter's detail and payload) may hold."""


class RuleKind(StrEnum):
    VERSION = "version"
    NUMBER = "number"
    INTEGER = "integer"
    SYMBOL = "symbol"
    CHOICE = "choice"
    TEXT = "text"


@dataclass(frozen=True)
class Rule:
    """What one field's value must be. Written once here; the pydantic field (and so the JSON Schema),
    the scalar judge and the vectorised judge below are all derived from it.

    Numbers: finite; ``gt``/``ge`` is the lower bound whose breach has its own reason (``low_reason``:
    a price that is not positive, a negative volume); ``floor``/``ceiling`` bound the sane range
    (``out_of_range``). Text: at most ``max_length`` characters, none of ``forbidden``.
    """

    kind: RuleKind
    gt: float | None = None
    ge: float | None = None
    low_reason: RejectReason = RejectReason.OUT_OF_RANGE
    floor: float | None = None
    ceiling: float | None = None
    max_length: int | None = None
    forbidden: str = ""
    choices: tuple[str, ...] = ()

    def field(self, **kwargs: Any) -> Any:
        """The pydantic ``Field`` enforcing this rule (strict: no bool, no numeric strings)."""
        if self.kind is RuleKind.VERSION:  # exactly the integer SCHEMA_VERSION (never true or 1.0)
            kwargs.update(
                strict=True, ge=SCHEMA_VERSION, le=SCHEMA_VERSION, json_schema_extra={"const": SCHEMA_VERSION}
            )
        if self.kind in (RuleKind.NUMBER, RuleKind.INTEGER):
            kwargs["strict"] = True
        if self.kind is RuleKind.NUMBER:
            kwargs["allow_inf_nan"] = False
        bounds = {
            "gt": self.gt,
            "ge": self.ge if self.floor is None else max(self.ge or self.floor, self.floor),
        }
        bounds["le"] = self.ceiling
        kwargs.update({k: v for k, v in bounds.items() if v is not None})
        if self.max_length is not None:
            kwargs["max_length"] = self.max_length
        if self.kind is RuleKind.SYMBOL:
            kwargs["pattern"] = SYMBOL_PATTERN
        elif self.forbidden:
            kwargs["pattern"] = f"^[^{self.forbidden}]*$"
        return Field(**kwargs)

    def annotated(self, base: Any, **kwargs: Any) -> Any:
        """``Annotated[base, Field(...), self]``: the type of a model field under this rule."""
        if self.kind is RuleKind.SYMBOL:  # Python's `$` also matches before a final newline
            return Annotated[base, self.field(**kwargs), AfterValidator(_whole_symbol), self]
        return Annotated[base, self.field(**kwargs), self]

    def accepts(self, values: pd.Series) -> np.ndarray:
        """Vectorised: True where a value of the right JSON type is present (not null, not NaN) and
        passes this rule's value checks (the masks :func:`vector_rules` uses)."""
        ok = values.notna().to_numpy(dtype=bool)
        for mask, _, _ in _vector_value_rules("value", self, values):
            ok &= ~mask
        return ok

    def accepts_one(self, value: Any) -> bool:
        """Scalar: True when a value of the right JSON type passes this rule's value checks."""
        return _type_reason("value", self, value) is None and _value_reason("value", self, value) is None


def _whole_symbol(value: str) -> str:
    if not _SYMBOL_RE.fullmatch(value):
        raise ValueError(f"symbol {value!r} is not a valid symbol")
    return value


def _choices(enum: type[StrEnum]) -> Rule:
    return Rule(RuleKind.CHOICE, choices=tuple(m.value for m in enum))


PRICE = Rule(
    RuleKind.NUMBER, gt=0.0, low_reason=RejectReason.NON_POSITIVE_PRICE, floor=MIN_PRICE, ceiling=MAX_PRICE
)
VOLUME = Rule(RuleKind.NUMBER, ge=0.0, low_reason=RejectReason.NEGATIVE_VOLUME, ceiling=MAX_VOLUME)
EVENT_MS = Rule(RuleKind.INTEGER, ge=0, ceiling=MAX_EPOCH_MS)
INGEST_MS = Rule(RuleKind.INTEGER, ge=MIN_INGEST_MS, ceiling=MAX_EPOCH_MS)
SYMBOL = Rule(RuleKind.SYMBOL, max_length=32)
VERSION = Rule(RuleKind.VERSION)


def _identifier(max_length: int) -> Rule:
    return Rule(RuleKind.TEXT, max_length=max_length, forbidden=IDENTIFIER_FORBIDDEN)


def _free_text(max_length: int | None = None) -> Rule:
    return Rule(RuleKind.TEXT, max_length=max_length, forbidden=FREE_TEXT_FORBIDDEN)


Symbol = SYMBOL.annotated(
    str, description="Instrument symbol as Yahoo spells it, upper case (AAPL, BTC-USD, ^GSPC, EURUSD=X)."
)
Price = PRICE.annotated(float)
Volume = VOLUME.annotated(float)
EpochMs = EVENT_MS.annotated(int, description="UTC epoch milliseconds.")
IngestMs = INGEST_MS.annotated(int, description="UTC epoch milliseconds.")


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True, regex_engine="python-re")

    schema_version: VERSION.annotated(int) = Field(  # type: ignore[valid-type]
        default=SCHEMA_VERSION, description="Contract version; required on the wire."
    )


class Tick(_Message):
    """One trade or quote update. Topic ``market.ticks.v1``, key = symbol.

    Beyond what the schema states: bid <= ask when both are present; event_time_ms and ingest_time_ms
    at most CONTRACT_FUTURE_TOLERANCE_MS (5 s) ahead of the reader's clock; times written as integers
    (1.0 is refused); unknown fields are ignored."""

    symbol: Symbol
    event_time_ms: EpochMs = Field(description="Exchange time of the trade/quote, UTC epoch ms.")
    price: Price = Field(description="Last trade price, quote currency per unit.")
    size: Volume = Field(description="Units traded in this tick (shares/coins); 0 for a quote.")
    bid: Price | None = Field(default=None, description="Best bid, quote currency.")
    ask: Price | None = Field(default=None, description="Best ask, quote currency.")
    day_volume: Volume | None = Field(
        default=None, description="Cumulative session volume as reported by the source, units."
    )
    currency: _identifier(8).annotated(str) | None = Field(  # type: ignore[valid-type]
        default=None, description="ISO 4217 quote currency."
    )
    exchange: _identifier(16).annotated(str) | None = Field(  # type: ignore[valid-type]
        default=None, description="Exchange code."
    )
    source: _choices(Source).annotated(Source) = Field(  # type: ignore[valid-type]
        description="Which ingest source produced it."
    )
    ingest_time_ms: IngestMs = Field(description="When the ingest service read it, UTC epoch ms.")


class Bar(_Message):
    """One OHLCV bar. Topic ``market.bars.v1``, key = symbol.

    Beyond what the schema states: low <= open <= high and low <= close <= high; event_time_ms and
    ingest_time_ms at most CONTRACT_FUTURE_TOLERANCE_MS (5 s) ahead of the reader's clock; times
    written as integers (1.0 is refused); unknown fields are ignored."""

    symbol: Symbol
    interval: _choices(BarInterval).annotated(BarInterval) = Field(  # type: ignore[valid-type]
        description="Bar length."
    )
    event_time_ms: EpochMs = Field(description="Bar start (open time), UTC epoch ms.")
    open: Price = Field(description="First trade price in the bar, quote currency.")
    high: Price = Field(description="Highest trade price, quote currency.")
    low: Price = Field(description="Lowest trade price, quote currency.")
    close: Price = Field(description="Last trade price (unadjusted), quote currency.")
    adj_close: Price | None = Field(
        default=None, description="Close adjusted for splits and dividends (daily bars)."
    )
    volume: Volume = Field(description="Units traded in the bar.")
    source: _choices(Source).annotated(Source)  # type: ignore[valid-type]
    ingest_time_ms: IngestMs


class DeadLetter(_Message):
    """A refused record. Topic ``market.deadletter.v1``, key = symbol when known, else empty."""

    reason: _choices(RejectReason).annotated(RejectReason)  # type: ignore[valid-type]
    detail: _free_text(2000).annotated(str) = Field(  # type: ignore[valid-type]
        description="Human-readable explanation with the value."
    )
    stage: _choices(Stage).annotated(Stage)  # type: ignore[valid-type]
    source: _identifier(64).annotated(str) = Field(  # type: ignore[valid-type]
        description="Source name, or the topic read from."
    )
    topic: _identifier(249).annotated(str) = Field(  # type: ignore[valid-type]
        description="The topic the record was meant for / read from."
    )
    symbol: SYMBOL.annotated(str) | None = Field(  # type: ignore[valid-type]
        default=None, description="The record's symbol when it is a valid one."
    )
    payload: _free_text().annotated(str) = Field(  # type: ignore[valid-type]
        description="The original bytes: UTF-8 text, or base64 (see encoding)."
    )
    payload_encoding: Rule(RuleKind.CHOICE, choices=("utf-8", "base64")).annotated(  # type: ignore[valid-type]
        Literal["utf-8", "base64"]
    ) = "utf-8"
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
    """JSON Schema of one topic's value, for documentation and external consumers (``schema_version``
    is required on the wire, though Python code may leave it to its default)."""
    schema = MESSAGE_TYPES[Topic(topic)].model_json_schema()
    schema["required"] = list(fields_of(topic).required)
    schema["additionalProperties"] = True  # readers ignore unknown fields: additive fields are allowed
    return schema


def field_names(topic: Topic | str) -> list[str]:
    return list(MESSAGE_TYPES[Topic(topic)].model_fields)


# --- the rules, judged: one table, a scalar judge (ingest, the stream's slow path) and a vectorised one
#     (the stream's fast path). tests/foundation/test_contract_property.py holds the two together.


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was refused: a contract reason code and a detail naming the offending value."""

    reason: RejectReason
    detail: str


@dataclass(frozen=True)
class Ordered:
    """``lower <= upper`` when both are present, else ``crossed_prices``."""

    lower: str
    upper: str


@dataclass(frozen=True)
class FieldSpec:
    name: str
    rule: Rule
    required: bool


@dataclass(frozen=True)
class MessageSpec:
    """A topic's rules in the order they are judged: the first failure is the record's reason."""

    fields: tuple[FieldSpec, ...]
    ordered: tuple[Ordered, ...]
    not_after_reference: tuple[str, ...]
    """Time fields that may be at most the tolerance ahead of the reference time (ingest: its clock;
    the stream: the record's Kafka timestamp, so a replayed batch is judged as the first time)."""

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)


MODEL_RULES: dict[Topic, tuple[tuple[Ordered, ...], tuple[str, ...]]] = {
    Topic.TICKS: ((Ordered("bid", "ask"),), ("event_time_ms", "ingest_time_ms")),
    Topic.BARS: (
        (Ordered("low", "open"), Ordered("low", "close"), Ordered("open", "high"), Ordered("close", "high")),
        ("event_time_ms", "ingest_time_ms"),
    ),
    Topic.DEADLETTER: ((), ()),
}


def _rule_of(info: Any) -> Rule:
    for item in info.metadata:
        if isinstance(item, Rule):
            return item
    for arg in typing.get_args(info.annotation):  # Optional[Annotated[...]]: the rule sits inside
        for item in getattr(arg, "__metadata__", ()):
            if isinstance(item, Rule):
                return item
    raise TypeError(f"contract field without a Rule: {info!r}")


@cache
def fields_of(topic: Topic | str) -> MessageSpec:
    """The judged form of a topic's message model (every field of it, in declaration order)."""
    topic = Topic(topic)
    model = MESSAGE_TYPES[topic]
    specs = tuple(
        FieldSpec(name, _rule_of(info), info.is_required() or name == "schema_version")
        for name, info in model.model_fields.items()
    )
    ordered, windows = MODEL_RULES[topic]
    return MessageSpec(specs, ordered, windows)


def load_json(raw: bytes | str) -> dict[str, Any] | Rejection:
    """Bytes off the wire -> a JSON object, or oversize / malformed_json / not_an_object.

    Invalid UTF-8, duplicate keys (two readers could keep different ones) and a top-level value that is
    not an object are refused."""
    size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    if size > MAX_MESSAGE_BYTES:
        return Rejection(RejectReason.OVERSIZE, f"{size} bytes > limit {MAX_MESSAGE_BYTES}")
    if size == 0:
        return Rejection(RejectReason.MALFORMED_JSON, "empty value")
    try:
        obj = json.loads(raw, object_pairs_hook=_unique_keys)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return Rejection(RejectReason.MALFORMED_JSON, f"not JSON: {exc}"[:500])
    if not isinstance(obj, dict):
        return Rejection(RejectReason.NOT_AN_OBJECT, f"JSON {type(obj).__name__}, expected an object")
    return obj


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"key {dup!r} appears twice")
    return out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer literal too long for a double: as the fast path reads it
        return math.inf if value > 0 else -math.inf


@cache
def _forbidden_re(chars: str) -> re.Pattern[str]:
    return re.compile(f"[{chars}]")


def _type_reason(name: str, rule: Rule, value: Any) -> Rejection | None:
    kind = rule.kind
    if kind is RuleKind.NUMBER:
        ok = _is_number(value)
        what = "a JSON number"
    elif kind is RuleKind.INTEGER:
        ok = isinstance(value, int) and not isinstance(value, bool)
        what = "a whole number of milliseconds"
    elif kind is RuleKind.CHOICE:
        ok = isinstance(value, str) and value in rule.choices
        what = f"one of {list(rule.choices)}"
    else:  # symbol, text
        ok = isinstance(value, str)
        what = "a string"
    return None if ok else Rejection(RejectReason.WRONG_TYPE, f"{name}={_show(value)} is not {what}")


def _value_reason(name: str, rule: Rule, value: Any) -> Rejection | None:
    kind = rule.kind
    if kind is RuleKind.NUMBER:
        x = _as_float(value)
        if not math.isfinite(x):
            return Rejection(RejectReason.NON_FINITE, f"{name}={_show(value)} is not finite")
        if (rule.gt is not None and not x > rule.gt) or (rule.ge is not None and not x >= rule.ge):
            bound = f"> {rule.gt}" if rule.gt is not None else f">= {rule.ge}"
            return Rejection(rule.low_reason, f"{name}={_show(value)} is not {bound}")
    if kind in (RuleKind.NUMBER, RuleKind.INTEGER):
        x = _as_float(value)
        low = rule.floor if rule.floor is not None else (rule.ge if kind is RuleKind.INTEGER else None)
        if (low is not None and x < low) or (rule.ceiling is not None and x > rule.ceiling):
            return Rejection(
                RejectReason.OUT_OF_RANGE, f"{name}={_show(value)} is outside [{low}, {rule.ceiling}]"
            )
    elif kind is RuleKind.SYMBOL:
        if len(value) > (rule.max_length or 32) or not _SYMBOL_RE.fullmatch(value):
            return Rejection(RejectReason.BAD_SYMBOL, f"symbol={_show(value)} is not a valid symbol")
    elif kind is RuleKind.TEXT:
        if rule.max_length is not None and len(value) > rule.max_length:
            return Rejection(RejectReason.BAD_TEXT, f"{name}={_show(value)} is longer than {rule.max_length}")
        if rule.forbidden and _forbidden_re(rule.forbidden).search(value):
            return Rejection(RejectReason.BAD_TEXT, f"{name}={_show(value)} holds a control character")
    return None


def check(
    topic: Topic | str, obj: Mapping[str, Any], reference_ms: int, tolerance_ms: int
) -> Rejection | None:
    """Judge one decoded message: None when the contract accepts it, else the first rule it breaks.

    Order: schema_version (missing, then unsupported) -> required fields present and not null ->
    each present field's JSON type (numbers are numbers, never booleans or strings; times are whole
    numbers; enumerations are one of their values) -> each field's value (finite, bounds, ranges,
    symbol syntax, text length and characters) -> field pairs (bid <= ask, low <= open/close <= high)
    -> time fields at most `tolerance_ms` ahead of `reference_ms`. Unknown fields are ignored.
    """
    spec = fields_of(topic)
    version = obj.get("schema_version")
    if version is None:
        return Rejection(RejectReason.MISSING_FIELD, "schema_version is missing or null")
    if type(version) is not int or version != SCHEMA_VERSION:
        return Rejection(RejectReason.UNSUPPORTED_SCHEMA_VERSION, f"schema_version={_show(version)}")
    for f in spec.fields:
        if f.required and obj.get(f.name) is None:
            return Rejection(RejectReason.MISSING_FIELD, f"{f.name} is missing or null")
    present = [
        (f, obj[f.name]) for f in spec.fields if obj.get(f.name) is not None and f.name != "schema_version"
    ]
    for f, value in present:
        if (bad := _type_reason(f.name, f.rule, value)) is not None:
            return bad
    for f, value in present:
        if (bad := _value_reason(f.name, f.rule, value)) is not None:
            return bad
    for pair in spec.ordered:
        lo, hi = obj.get(pair.lower), obj.get(pair.upper)
        if lo is not None and hi is not None and _as_float(lo) > _as_float(hi):
            return Rejection(RejectReason.CROSSED_PRICES, f"{pair.lower}={lo!r} > {pair.upper}={hi!r}")
    for name in spec.not_after_reference:
        value = obj.get(name)
        if value is not None and value > reference_ms + tolerance_ms:
            return Rejection(
                RejectReason.FUTURE_TIME,
                f"{name}={value} is {value - reference_ms} ms ahead of {reference_ms}",
            )
    return None


def known_fields(topic: Topic | str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The contract's fields of a decoded message (unknown, additive fields dropped)."""
    return {f.name: obj[f.name] for f in fields_of(topic).fields if obj.get(f.name) is not None}


def clean_symbol_or_none(value: Any) -> str | None:
    """A dead letter's symbol: the value when it is a valid symbol, else None (never unsafe text)."""
    return value if isinstance(value, str) and _value_reason("symbol", SYMBOL, value) is None else None


# --- vectorised: the same table over columns (a pandas frame read by Arrow with the topic's schema)


RuleMask = tuple[np.ndarray, RejectReason, Callable[[pd.Series], str]]


def _num(column: pd.Series) -> np.ndarray:
    return column.to_numpy(dtype=float, na_value=np.nan)


def _detail(name: str, text: str) -> Callable[[pd.Series], str]:
    return lambda row: f"{name}={_show(_py(row[name]))} {text}"


def _py(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2**53 else value


def vector_rules(
    topic: Topic | str, frame: pd.DataFrame, reference_ms: np.ndarray, tolerance_ms: int
) -> list[RuleMask]:
    """The contract's rules over a frame of messages whose JSON types are already right (Arrow parsed
    them with :func:`arrow_schema`), as (mask, reason, detail) in the order :func:`check` applies them.
    Apply them first-failure-wins (:func:`first_failures`)."""
    spec = fields_of(topic)
    rules: list[RuleMask] = []
    version = _num(frame["schema_version"])
    rules.append(
        (np.isnan(version), RejectReason.MISSING_FIELD, lambda r: "schema_version is missing or null")
    )
    rules.append(
        (version != SCHEMA_VERSION, RejectReason.UNSUPPORTED_SCHEMA_VERSION, _detail("schema_version", ""))
    )
    for f in spec.fields:
        if f.required:
            rules.append(
                (
                    frame[f.name].isna().to_numpy(),
                    RejectReason.MISSING_FIELD,
                    lambda r, n=f.name: f"{n} is missing or null",
                )
            )
    for f in spec.fields:  # JSON types: Arrow refused any other type, only enumerations remain
        if f.rule.kind is RuleKind.CHOICE:
            col = frame[f.name]
            bad = col.notna().to_numpy() & ~col.isin(f.rule.choices).to_numpy()
            rules.append(
                (bad, RejectReason.WRONG_TYPE, _detail(f.name, f"is not one of {list(f.rule.choices)}"))
            )
    for f in spec.fields:
        if f.name != "schema_version":
            rules.extend(_vector_value_rules(f.name, f.rule, frame[f.name]))
    for pair in spec.ordered:
        with np.errstate(invalid="ignore"):
            crossed = _num(frame[pair.lower]) > _num(frame[pair.upper])  # NaN (absent) compares False
        rules.append(
            (
                crossed,
                RejectReason.CROSSED_PRICES,
                lambda r, p=pair: f"{p.lower}={_py(r[p.lower])!r} > {p.upper}={_py(r[p.upper])!r}",
            )
        )
    for name in spec.not_after_reference:
        with np.errstate(invalid="ignore"):
            ahead = _num(frame[name]) > reference_ms.astype(float) + tolerance_ms
        rules.append((ahead, RejectReason.FUTURE_TIME, _detail(name, "is ahead of the reference time")))
    return rules


def _vector_value_rules(name: str, rule: Rule, col: pd.Series) -> list[RuleMask]:
    out: list[RuleMask] = []
    if rule.kind in (RuleKind.NUMBER, RuleKind.INTEGER):
        x = _num(col)
        present = ~np.isnan(x)
        with np.errstate(invalid="ignore"):
            if rule.kind is RuleKind.NUMBER:
                out.append(
                    (present & ~np.isfinite(x), RejectReason.NON_FINITE, _detail(name, "is not finite"))
                )
                low = np.zeros(len(x), dtype=bool)
                if rule.gt is not None:
                    low |= x <= rule.gt
                if rule.ge is not None:
                    low |= x < rule.ge
                out.append((present & low, rule.low_reason, _detail(name, "is below its bound")))
            floor = (
                rule.floor if rule.floor is not None else (rule.ge if rule.kind is RuleKind.INTEGER else None)
            )
            outside = np.zeros(len(x), dtype=bool)
            if floor is not None:
                outside |= x < floor
            if rule.ceiling is not None:
                outside |= x > rule.ceiling
            out.append((present & outside, RejectReason.OUT_OF_RANGE, _detail(name, "is out of range")))
    elif rule.kind is RuleKind.SYMBOL:
        text = col.astype(object)
        present = col.notna().to_numpy()
        if present.any():
            s = text.where(col.notna(), "")
            bad = (
                ~s.str.fullmatch(SYMBOL_PATTERN).to_numpy(bool)
                | (s.str.len() > (rule.max_length or 32)).to_numpy()
            )
            out.append((present & bad, RejectReason.BAD_SYMBOL, _detail(name, "is not a valid symbol")))
    elif rule.kind is RuleKind.TEXT:
        present = col.notna().to_numpy()
        if present.any():
            s = col.where(col.notna(), "").astype(object)
            too_long = np.zeros(len(s), dtype=bool)
            if rule.max_length is not None:
                too_long = (s.str.len() > rule.max_length).to_numpy()
            out.append(
                (
                    present & too_long,
                    RejectReason.BAD_TEXT,
                    _detail(name, f"is longer than {rule.max_length}"),
                )
            )
            if rule.forbidden:
                held = s.str.contains(f"[{rule.forbidden}]", regex=True).to_numpy(bool)
                out.append(
                    (present & held, RejectReason.BAD_TEXT, _detail(name, "holds a control character"))
                )
    return out


def first_failures(frame: pd.DataFrame, rules: list[RuleMask]) -> tuple[np.ndarray, list[str | None]]:
    """reason value per row (None when every rule passes) and its detail: the first failing rule wins."""
    n = len(frame)
    reason = np.full(n, None, dtype=object)
    detail: list[str | None] = [None] * n
    open_rows = np.ones(n, dtype=bool)
    for mask, code, text in rules:
        hit = np.flatnonzero(np.asarray(mask, dtype=bool) & open_rows)
        if len(hit):
            open_rows[hit] = False
            reason[hit] = code.value
            for i in hit:
                detail[i] = text(frame.iloc[i])[:2000]
    return reason, detail


if __name__ == "__main__":  # pragma: no cover - documentation helper
    for t in Topic:
        print(json.dumps({"topic": t.value, "schema": json_schema(t)}, indent=2))
