"""Parsing and validation of Kafka records with the contract's schema (pure, no services)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.contract import Source, Tick, encode
from spark_streaming.feed import tick_value
from spark_streaming.parse import parse_ticks

NOW = 1_760_000_000_000


def _records(pairs: list[tuple[bytes | None, bytes]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "kafka_topic": "t",
            "kafka_partition": 0,
            "kafka_offset": np.arange(len(pairs)),
            "kafka_ms": NOW,
            "key": [k for k, _ in pairs],
            "value": [v for _, v in pairs],
        }
    )


def _tick(**over) -> bytes:
    fields = {
        "schema_version": 1,
        "symbol": "AAPL",
        "event_time_ms": NOW,
        "price": 1.5,
        "size": 2.0,
        "source": "synthetic",
        "ingest_time_ms": NOW,
    }
    fields.update(over)
    import json

    return json.dumps({k: v for k, v in fields.items() if v is not ...}).encode()


def test_fast_tick_encoding_is_byte_identical_to_the_contract_encoder():
    t = Tick(
        symbol="BTC-USD",
        event_time_ms=NOW,
        price=65000.25,
        size=0.5,
        source=Source.SYNTHETIC,
        ingest_time_ms=NOW + 3,
    )
    assert tick_value("BTC-USD", NOW, 65000.25, 0.5, NOW + 3) == encode(t)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"AAPL", b'{"symbol":"AAPL",', "malformed_json"),
        (b"AAPL", b"[1, 2]", "not_an_object"),
        (b"AAPL", _tick(price=...), "missing_field"),
        (b"AAPL", _tick(price="abc"), "wrong_type"),
        (b"AAPL", _tick(schema_version=2), "unsupported_schema_version"),
        (b"aapl", _tick(symbol="aapl"), "bad_symbol"),
        (b"MSFT", _tick(), "key_mismatch"),
        (b"AAPL", _tick(price=-1.0), "non_positive_price"),
        (b"AAPL", _tick(size=-1.0), "negative_volume"),
        (b"AAPL", _tick(bid=2.0, ask=1.0), "crossed_prices"),
        (b"AAPL", _tick(event_time_ms=NOW + 3_600_000), "future_time"),
        (b"AAPL", _tick(source="nowhere"), "wrong_type"),
        (b"AAPL", b"x" * 70_000, "oversize"),
    ],
)
def test_refused_tick_gets_its_reason_and_the_valid_neighbours_pass(key, value, reason):
    good = tick_value("AAPL", NOW - 1, 1.0, 1.0, NOW)
    valid, refused = parse_ticks(_records([(b"AAPL", good), (key, value), (b"AAPL", good)]), 300_000)
    assert len(valid) == 2
    assert refused["reason"].tolist() == [reason]
    assert refused["kafka_offset"].tolist() == [1]


def test_unknown_extra_fields_are_tolerated():
    valid, refused = parse_ticks(_records([(b"AAPL", _tick(venue="X"))]), 300_000)
    assert len(valid) == 1 and refused.empty


def test_valid_ticks_keep_their_values_and_kafka_coordinates():
    valid, _ = parse_ticks(_records([(b"AAPL", tick_value("AAPL", NOW, 10.25, 3.0, NOW + 1))]), 300_000)
    row = valid.iloc[0]
    assert (row["symbol"], row["event_time_ms"], row["price"], row["size"], row["ingest_time_ms"]) == (
        "AAPL",
        NOW,
        10.25,
        3.0,
        NOW + 1,
    )
    assert row["kafka_offset"] == 0
