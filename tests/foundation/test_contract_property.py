"""Ingest and the stream make the same decision on every record: one contract, three judges.

Generated tick and bar messages - valid ones drawn from the contract's own ranges, then mutated (wrong
JSON types, booleans for numbers, nulls, missing fields, NUL and control characters, extreme numbers,
times out of range or ahead, schema versions, unknown fields, broken bytes) - go through:

- ingest's rules (:func:`ingest.rules.judge`, what the pipeline applies to a complete message),
- the stream's slow path (:func:`spark_streaming.parse.judge_alone`),
- the stream's fast path (Arrow block + :func:`common.contract.vector_rules`) whenever Arrow reads it,
- and the stream's real routing (:func:`spark_streaming.parse.parse_ticks` / ``parse_bars``),
- and the published JSON Schema, as far as a JSON Schema can state the rules,

and all must accept, or refuse with the same reason code. A second property: whatever ingest builds
from a source record and would publish, the stream accepts with the same values.
"""

from __future__ import annotations

import json
import math

import msgspec
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from common.contract import (
    MAX_EPOCH_MS,
    MAX_PRICE,
    MAX_VOLUME,
    MIN_INGEST_MS,
    MIN_PRICE,
    SYMBOL_PATTERN,
    BarInterval,
    Rejection,
    Source,
    Topic,
    fields_of,
    json_schema,
    load_json,
)
from ingest.rules import Limits, clean, judge
from spark_streaming.parse import judge_alone, judge_block, parse_bars, parse_ticks, read_block

NOW = 1_764_000_000_000
TOLERANCE = 5_000
NEUTRAL = Limits(future_tolerance_ms=TOLERANCE, max_age_ms=None, known=None)
"""Ingest's own policy (age, instrument list) off: only the contract's rules are compared."""
PARSERS = {Topic.TICKS: parse_ticks, Topic.BARS: parse_bars}
relaxed = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], max_examples=400
)

symbols = st.from_regex(SYMBOL_PATTERN.replace("^", "\\A", 1).replace("$", "\\Z"))
prices = st.floats(min_value=MIN_PRICE, max_value=MAX_PRICE)
volumes = st.floats(min_value=0.0, max_value=MAX_VOLUME)
event_times = st.integers(min_value=0, max_value=NOW + TOLERANCE)
ingest_times = st.integers(min_value=MIN_INGEST_MS, max_value=NOW + TOLERANCE)
texts = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), max_size=8)


@st.composite
def valid_ticks(draw) -> dict:
    tick = {
        "schema_version": 1,
        "symbol": draw(symbols),
        "event_time_ms": draw(event_times),
        "price": draw(prices),
        "size": draw(volumes),
        "source": draw(st.sampled_from([s.value for s in Source])),
        "ingest_time_ms": draw(ingest_times),
    }
    if draw(st.booleans()):
        bid, ask = sorted([draw(prices), draw(prices)])
        tick |= {"bid": bid, "ask": ask}
    if draw(st.booleans()):
        tick |= {"day_volume": draw(volumes), "currency": draw(texts), "exchange": draw(texts)}
    return tick


@st.composite
def valid_bars(draw) -> dict:
    o, h, lo, c = draw(prices), draw(prices), draw(prices), draw(prices)
    lo, h = min(o, h, lo, c), max(o, h, lo, c)
    bar = {
        "schema_version": 1,
        "symbol": draw(symbols),
        "interval": draw(st.sampled_from([i.value for i in BarInterval])),
        "event_time_ms": draw(event_times),
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": draw(volumes),
        "source": draw(st.sampled_from([s.value for s in Source])),
        "ingest_time_ms": draw(ingest_times),
    }
    if draw(st.booleans()):
        bar["adj_close"] = draw(prices)
    return bar


INTERESTING = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    10**19,
    2**63,
    -(2**63) - 1,
    10**400,
    MAX_EPOCH_MS + 1,
    NOW + TOLERANCE + 1,
    MIN_INGEST_MS - 1,
    0.0,
    -0.0,
    5e-324,
    1e-300,
    MIN_PRICE / 2,
    1e308,
    1.0,
    1.5,
    float(NOW),
    math.inf,
    -math.inf,
    math.nan,
    "",
    "1",
    "1.5",
    "AAPL",
    "aapl",
    "X\x00Y",
    "\x07",
    "\x9f",
    "\ud800",
    "é",
    "a" * 300,
    "E" * 17,
    "yahoo",
    "1d",
    "7m",
    [1],
    {"a": 1},
]
"""Values that sit on a rule's edge or break it in a way the two paths could read differently."""

weird_values = st.one_of(
    st.sampled_from(INTERESTING),
    st.sampled_from(INTERESTING),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)
FIELDS = {
    Topic.TICKS: [
        *fields_of(Topic.TICKS).required,
        "bid",
        "ask",
        "day_volume",
        "currency",
        "exchange",
        "venue",
    ],
    Topic.BARS: [*fields_of(Topic.BARS).required, "adj_close", "venue"],
}


@st.composite
def mutated(draw, topic: Topic) -> dict:
    message = dict(draw(valid_ticks() if topic is Topic.TICKS else valid_bars()))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        name = draw(st.sampled_from(FIELDS[topic]))
        if draw(st.integers(min_value=0, max_value=4)) == 0:
            message.pop(name, None)
        else:
            message[name] = draw(weird_values)
    return message


def wire(message: dict, damage: str | None) -> bytes:
    """JSON bytes as a producer could send them (Python's json writes NaN, Infinity and huge integers)."""
    raw = json.dumps(message, allow_nan=True).encode()
    if damage == "truncate":
        return raw[: len(raw) // 2]
    if damage == "invalid_utf8" and b'"symbol": "' in raw:
        return raw.replace(b'"symbol": "', b'"symbol": "\xff', 1)
    if damage == "duplicate_key":
        return raw[:-1] + b', "symbol": "ZZZZ"}'
    if damage == "newline":
        return raw.replace(b", ", b",\n", 1)
    if damage == "array":
        return b"[" + raw + b"]"
    return raw


def _key(message: dict) -> bytes:
    symbol = message.get("symbol")
    try:
        return symbol.encode() if isinstance(symbol, str) else b""
    except UnicodeEncodeError:
        return b""


def _records(value: bytes, key: bytes) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "kafka_topic": "t",
            "kafka_partition": 0,
            "kafka_offset": [0],
            "kafka_ms": NOW,
            "key": [key],
            "value": [value],
        }
    )


def ingest_decision(topic: Topic, value: bytes) -> str | None:
    obj = load_json(value)
    if isinstance(obj, Rejection):
        return obj.reason.value
    rejection = judge(topic, obj, NOW, NEUTRAL)
    return None if rejection is None else rejection.reason.value


def slow_decision(topic: Topic, value: bytes) -> str | None:
    judged = judge_alone(topic, value, NOW, TOLERANCE)
    return judged.reason.value if isinstance(judged, Rejection) else None


def fast_decision(topic: Topic, value: bytes) -> str | bool | None:
    """The fast path's decision, or False when Arrow does not read the record (the slow path's)."""
    frame = read_block([value], topic)
    if frame is None:
        return False
    reason, _ = judge_block(topic, frame, np.array([NOW]), TOLERANCE)
    return reason[0]


def stream_decision(topic: Topic, value: bytes, key: bytes) -> tuple[str | None, pd.DataFrame]:
    valid, refused = PARSERS[topic](_records(value, key), TOLERANCE)
    assert len(valid) + len(refused) == 1
    return (None if len(valid) else refused["reason"].iloc[0]), valid


SCHEMA_VALIDATORS = {t: Draft202012Validator(json_schema(t)) for t in (Topic.TICKS, Topic.BARS)}
BEYOND_THE_SCHEMA = {
    "crossed_prices",
    "future_time",
    "wrong_type",
    "unsupported_schema_version",
    "non_finite",
}
"""What the contract refuses that a JSON Schema cannot state: field pairs, the time window relative to
a clock, integers written as 1.0 (JSON Schema's "integer" takes them), and NaN / Infinity (not JSON
at all, but Python's reader takes them and a schema's bounds do not catch NaN)."""


def _schema_agrees(topic: Topic, value: bytes, expected: str | None) -> None:
    """The published JSON Schema refuses nothing the contract accepts, and what it accepts the
    contract refuses only for a rule the schema cannot state."""
    obj = load_json(value)
    if isinstance(obj, Rejection):
        return
    valid = SCHEMA_VALIDATORS[topic].is_valid(obj)
    if expected is None:
        assert valid, (value, list(SCHEMA_VALIDATORS[topic].iter_errors(obj))[:1])
    elif valid:
        assert expected in BEYOND_THE_SCHEMA, (value, expected)


def _same_decision(topic: Topic, message: dict, damage: str | None) -> None:
    value = wire(message, damage)
    expected = ingest_decision(topic, value)
    _schema_agrees(topic, value, expected)
    assert slow_decision(topic, value) == expected, (value, expected)
    fast = fast_decision(topic, value)
    if fast is not False:
        assert fast == expected, (value, expected)
    routed, valid = stream_decision(topic, value, _key(message))
    assert routed == expected, (value, expected)
    if expected is None:  # accepted: the stream keeps the values the record carries
        row, sent = valid.iloc[0], load_json(value)
        assert row["symbol"] == sent["symbol"] and row["event_time_ms"] == sent["event_time_ms"]


damages = st.sampled_from(
    [None, None, None, None, "truncate", "invalid_utf8", "duplicate_key", "newline", "array"]
)


TICK = {
    "schema_version": 1,
    "symbol": "AAPL",
    "event_time_ms": NOW,
    "price": 101.5,
    "size": 3.0,
    "source": "yahoo",
    "ingest_time_ms": NOW,
}
BAR = {
    "schema_version": 1,
    "symbol": "AAPL",
    "interval": "1d",
    "event_time_ms": NOW - 86_400_000,
    "open": 100.0,
    "high": 102.0,
    "low": 99.0,
    "close": 101.0,
    "volume": 1e6,
    "source": "replay",
    "ingest_time_ms": NOW,
}


@relaxed
@given(message=mutated(Topic.TICKS), damage=damages)
@example(message=TICK | {"exchange": "X\x00Y"}, damage=None)  # the record that stopped the stream
@example(message=TICK | {"exchange": "X\ud800"}, damage=None)
@example(message=TICK | {"exchange": "E" * 17}, damage=None)
@example(message=TICK | {"price": True}, damage=None)
@example(message=TICK | {"size": True}, damage=None)
@example(message=TICK | {"schema_version": None}, damage=None)
@example(message=TICK | {"schema_version": True}, damage=None)
@example(message=TICK | {"schema_version": 1.0}, damage=None)
@example(message={k: v for k, v in TICK.items() if k != "schema_version"}, damage=None)
@example(message=TICK | {"ingest_time_ms": -1}, damage=None)
@example(message=TICK | {"ingest_time_ms": True}, damage=None)
@example(message=TICK | {"price": 1e-300}, damage=None)
@example(message=TICK | {"price": 10**400}, damage=None)
@example(message=TICK | {"event_time_ms": NOW + 200_000}, damage=None)
@example(message=TICK | {"event_time_ms": float(NOW)}, damage=None)
@example(message=TICK | {"source": "nowhere"}, damage=None)
@example(message=TICK, damage="invalid_utf8")
@example(message=TICK, damage="duplicate_key")
def test_ingest_and_both_stream_paths_decide_every_tick_alike(message, damage):
    _same_decision(Topic.TICKS, message, damage)


@relaxed
@given(message=mutated(Topic.BARS), damage=damages)
@example(message=BAR | {"adj_close": 0.0}, damage=None)
@example(message=BAR | {"adj_close": -1.0}, damage=None)
@example(message=BAR | {"high": 98.0}, damage=None)
@example(message=BAR | {"interval": "7m"}, damage=None)
@example(message=BAR | {"volume": math.nan}, damage=None)
def test_ingest_and_both_stream_paths_decide_every_bar_alike(message, damage):
    _same_decision(Topic.BARS, message, damage)


@relaxed
@given(message=valid_ticks())
def test_every_generated_valid_tick_is_accepted_by_all(message):
    value = wire(message, None)
    assert ingest_decision(Topic.TICKS, value) is None
    assert stream_decision(Topic.TICKS, value, _key(message))[0] is None


_encode = msgspec.json.Encoder()


@relaxed
@given(
    record=mutated(Topic.TICKS),
    source=st.sampled_from(list(Source)),
    tick_size=st.sampled_from([None, 0.01, 0.0001]),
)
@example(record=TICK | {"price": 10**400}, source=Source.YAHOO, tick_size=0.01)  # crashed ingest once
def test_whatever_ingest_would_publish_the_stream_accepts_with_the_same_values(record, source, tick_size):
    record.pop("schema_version", None)
    message = clean(
        Topic.TICKS, record, NOW, NEUTRAL, source=source, ingest_time_ms=NOW, tick_size=lambda s: tick_size
    )
    if isinstance(message, Rejection):
        return
    reason, valid = stream_decision(Topic.TICKS, _encode.encode(message), message["symbol"].encode())
    assert reason is None
    row = valid.iloc[0]
    for name, value in message.items():
        assert row[name] == value, name
