"""A corpus of bad inputs through the real pipeline into the real broker: each bad record lands in the
dead-letter topic with its reason and original payload, and every valid record around it arrives."""

from __future__ import annotations

import base64
import json
import time

import pytest

from common.contract import DeadLetter, RejectReason, Source, Tick, Topic
from ingest.instruments import Instrument, Instruments
from ingest.service import build_pipeline
from ingest.sources.base import RawRecord


def _now() -> int:
    return time.time_ns() // 1_000_000


def corpus(symbol: str, now: int) -> list[tuple[Topic, bytes, RejectReason]]:
    def tick(**kw) -> bytes:
        return json.dumps(
            {"symbol": symbol, "event_time_ms": now - 30_000, "price": 10.0, "size": 1} | kw
        ).encode()

    bar = {"symbol": symbol, "interval": "1m", "event_time_ms": now - 60_000, "open": 10.0, "high": 11.0}
    bar |= {"low": 9.0, "close": 10.5, "volume": 100}
    return [
        (Topic.TICKS, b'{"symbol": "' + symbol.encode() + b'", "price": ', RejectReason.MALFORMED_JSON),
        (Topic.TICKS, b"[1, 2, 3]", RejectReason.NOT_AN_OBJECT),
        (Topic.TICKS, tick(price=float("nan")), RejectReason.NON_FINITE),  # json.dumps writes NaN
        (Topic.TICKS, tick(price=float("inf")), RejectReason.NON_FINITE),  # ... and Infinity
        (Topic.TICKS, tick(price=-5.0), RejectReason.NON_POSITIVE_PRICE),
        (Topic.TICKS, tick(price=0), RejectReason.NON_POSITIVE_PRICE),
        (Topic.TICKS, tick(size=-3), RejectReason.NEGATIVE_VOLUME),
        (Topic.BARS, json.dumps(bar | {"high": 8.0}).encode(), RejectReason.CROSSED_PRICES),
        (Topic.TICKS, tick(event_time_ms=now + 3_600_000), RejectReason.FUTURE_TIME),
        (Topic.TICKS, tick(event_time_ms=now - 3 * 86_400_000), RejectReason.STALE_TIME),
        (Topic.TICKS, tick(event_time_ms=now - 1_000), RejectReason.DUPLICATE),  # a valid tick sent it first
        (Topic.TICKS, tick(event_time_ms=now - 600_000), RejectReason.OUT_OF_ORDER),
        (Topic.TICKS, tick(symbol="NOTLISTED"), RejectReason.UNKNOWN_SYMBOL),
        (Topic.TICKS, tick(price="ten dollars"), RejectReason.WRONG_TYPE),
        (
            Topic.TICKS,
            json.dumps({"symbol": symbol, "event_time_ms": now, "size": 1}).encode(),
            RejectReason.MISSING_FIELD,
        ),
        (Topic.TICKS, tick(exchange="X" * 70_000), RejectReason.OVERSIZE),
        (Topic.TICKS, tick(schema_version=2), RejectReason.UNSUPPORTED_SCHEMA_VERSION),
        (Topic.TICKS, tick(symbol="AA PL!"), RejectReason.BAD_SYMBOL),
        (Topic.TICKS, b"\xff\xfe\x00garbage", RejectReason.MALFORMED_JSON),
        (Topic.BARS, json.dumps(bar | {"interval": "7m"}).encode(), RejectReason.WRONG_TYPE),
        (Topic.BARS, json.dumps(bar | {"volume": -1}).encode(), RejectReason.NEGATIVE_VOLUME),
    ]


@pytest.mark.slow
def test_every_bad_record_is_dead_lettered_with_its_reason_and_valid_neighbours_arrive(
    bootstrap_servers, own_topics, reader, settings, unique_symbol
):
    now = _now()
    instruments = Instruments([Instrument(unique_symbol)])
    pipeline = build_pipeline(
        Source.REPLAY,
        bootstrap=bootstrap_servers,
        settings=settings,
        instruments=instruments,
        topics=own_topics,
    )
    bad = corpus(unique_symbol, now)
    assert len({reason for _, _, reason in bad}) >= 15
    sent_valid: list[dict] = []
    t = now - 1_000

    def valid() -> None:
        nonlocal t
        value = {
            "symbol": unique_symbol.lower(),
            "event_time_ms": t,
            "price": 100.004 + len(sent_valid),
            "size": 5,
        }
        pipeline.process(RawRecord(Topic.TICKS, json.dumps(value).encode(), Source.REPLAY, now))
        sent_valid.append(value)
        t += 1

    for topic, payload, _reason in bad:
        valid()
        pipeline.process(RawRecord(topic, payload, Source.REPLAY, now))
    valid()
    assert pipeline.finish("replay") == 0

    letters = reader.read(Topic.DEADLETTER, len(bad))
    ticks = reader.read(Topic.TICKS, len(sent_valid))
    assert [d["reason"] for d in letters] == [reason.value for _, _, reason in bad]
    for letter, (topic, payload, _) in zip(letters, bad, strict=True):
        dl = DeadLetter.model_validate({k: v for k, v in letter.items() if k != "_key"})
        original = base64.b64decode(dl.payload) if dl.payload_encoding == "base64" else dl.payload.encode()
        assert original == payload[: len(original)] and len(original) == min(len(payload), 64 * 1024)
        assert (dl.source, dl.stage, dl.topic) == ("replay", "ingest", own_topics[topic])
        assert abs(dl.failed_at_ms - now) < 120_000
    assert len(ticks) == len(sent_valid)
    got = [Tick.model_validate({k: v for k, v in m.items() if k != "_key"}) for m in ticks]
    assert [(g.symbol, g.event_time_ms, g.size) for g in got] == [
        (unique_symbol, v["event_time_ms"], 5.0) for v in sent_valid
    ]
    assert [g.price for g in got] == [round(v["price"], 2) for v in sent_valid]  # cleaned to the cent tick
    assert {m["_key"] for m in ticks} == {unique_symbol}
