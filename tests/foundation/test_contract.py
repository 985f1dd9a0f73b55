"""The message contract: encoding, decoding and what it refuses."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from common.contract import (
    MESSAGE_TYPES,
    SCHEMA_VERSION,
    Tick,
    Topic,
    decode,
    encode,
    json_schema,
    message_key,
    payload_text,
)


def _tick(**over):
    base = dict(
        symbol="AAPL",
        event_time_ms=1_764_000_000_000,
        price=187.25,
        size=10.0,
        source="yahoo",
        ingest_time_ms=1_764_000_000_050,
    )
    return {**base, **over}


def test_a_tick_round_trips_through_its_wire_value():
    tick = Tick(**_tick(bid=187.2, ask=187.3))
    wire = encode(tick)
    assert json.loads(wire)["schema_version"] == SCHEMA_VERSION
    assert decode(Topic.TICKS, wire) == tick


def test_absent_optional_fields_are_left_out_of_the_wire_value():
    assert "bid" not in json.loads(encode(Tick(**_tick())))


@pytest.mark.parametrize(
    ("field", "value"),
    [("schema_version", 2), ("symbol", "aapl"), ("event_time_ms", -1), ("price", "abc"), ("extra", 1)],
)
def test_decoding_refuses_values_outside_the_contract(field, value):
    with pytest.raises(ValidationError):
        decode(Topic.TICKS, json.dumps(_tick(**{field: value})).encode())


def test_decoding_refuses_a_missing_required_field():
    body = _tick()
    del body["price"]
    with pytest.raises(ValidationError, match="price"):
        decode(Topic.TICKS, json.dumps(body).encode())


def test_every_topic_has_a_message_type_and_a_json_schema_with_units():
    for topic in Topic:
        schema = json_schema(topic)
        assert topic in MESSAGE_TYPES
        assert "schema_version" in schema["properties"]
    assert "epoch" in json_schema(Topic.TICKS)["properties"]["event_time_ms"]["description"]


def test_key_is_the_symbol_in_utf8_and_non_utf8_payloads_are_kept_as_base64():
    assert message_key("BTC-USD") == b"BTC-USD"
    assert payload_text(b'{"a": 1}') == ('{"a": 1}', "utf-8")
    assert payload_text(b"\xff\xfe") == ("//4=", "base64")


@pytest.mark.parametrize("symbol", ["AAPL", "^GSPC", "BRK-B", "EURUSD=X", "BTC-USD", "0700.HK", "GC=F"])
def test_symbols_as_yahoo_spells_them_are_accepted(symbol):
    assert decode(Topic.TICKS, json.dumps(_tick(symbol=symbol)).encode()).symbol == symbol


@pytest.mark.parametrize("symbol", ["", "A^B", "^", "-AAPL", "AAPL ", "X" * 33, "aapl"])
def test_malformed_symbols_are_refused(symbol):
    with pytest.raises(ValidationError):
        decode(Topic.TICKS, json.dumps(_tick(symbol=symbol)).encode())
