"""Fast wire encoding of the common price-and-size tick, without building a dict per record.

:class:`PriceSizeTick` holds exactly the contract ``Tick`` fields a price-and-size tick carries, in the
contract's field order, so msgspec writes the same JSON object that :func:`common.contract.encode`
writes for the equivalent ``Tick`` (tests/ingest/test_wire.py holds the two together).
"""

from __future__ import annotations

import msgspec

from common.contract import SCHEMA_VERSION


class PriceSizeTick(msgspec.Struct, gc=False):
    """A ``market.ticks.v1`` value with no bid/ask/day volume/currency/exchange (they are optional)."""

    schema_version: int
    symbol: str
    event_time_ms: int
    price: float
    size: float
    source: str
    ingest_time_ms: int


_encoder = msgspec.json.Encoder()


def encode_price_size_ticks(
    symbols: list[str], times: list[int], prices: list[float], sizes: list[float], source: str, ingest_ms: int
) -> list[bytes]:
    """Wire values of many validated price-and-size ticks (one JSON object each)."""
    encode, version = _encoder.encode, SCHEMA_VERSION
    return [
        encode(PriceSizeTick(version, sym, t, p, s, source, ingest_ms))
        for sym, t, p, s in zip(symbols, times, prices, sizes, strict=True)
    ]


def encode_price_size_tick(
    symbol: str, time_ms: int, price: float, size: float, source: str, ingest_ms: int
) -> bytes:
    """Wire value of one validated price-and-size tick."""
    return _encoder.encode(PriceSizeTick(SCHEMA_VERSION, symbol, time_ms, price, size, source, ingest_ms))
