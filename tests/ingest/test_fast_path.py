"""The vectorised tick path judges and encodes every record exactly as the record path does."""

from __future__ import annotations

import json
import math
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.contract import (
    MAX_EPOCH_MS,
    MAX_PRICE,
    MAX_VOLUME,
    MIN_PRICE,
    SYMBOL_PATTERN,
    Source,
    Tick,
    Topic,
    decode,
    encode,
    field_names,
)
from ingest.instruments import Instrument, Instruments
from ingest.pipeline import Pipeline
from ingest.producer import KafkaSink
from ingest.sequence import SequenceGuard
from ingest.sources.base import RawRecord
from ingest.wire import PriceSizeTick, encode_price_size_tick, encode_price_size_ticks
from tests.ingest.conftest import Reader

NOW = 1_750_000_000_000
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200)
prices = st.floats(min_value=MIN_PRICE, max_value=MAX_PRICE)  # the contract's ranges
sizes = st.floats(min_value=0.0, max_value=MAX_VOLUME)
event_times = st.integers(min_value=0, max_value=MAX_EPOCH_MS)
symbols = st.from_regex(SYMBOL_PATTERN.replace("^", "\\A", 1).replace("$", "\\Z"))


def test_wire_struct_fields_follow_the_contract_tick_field_order():
    contract = field_names(Topic.TICKS)
    ours = list(PriceSizeTick.__struct_fields__)
    assert [f for f in contract if f in ours] == ours
    assert {"schema_version", "symbol", "event_time_ms", "price", "size", "source", "ingest_time_ms"} == set(
        ours
    )


@relaxed
@given(symbols, event_times, prices, sizes, st.sampled_from(list(Source)))
def test_wire_bytes_decode_to_the_same_contract_tick_as_contract_encode(symbol, t, price, size, source):
    ours = encode_price_size_tick(symbol, t, price, size, source.value, NOW)
    tick = Tick(symbol=symbol, event_time_ms=t, price=price, size=size, source=source, ingest_time_ms=NOW)
    assert decode(Topic.TICKS, ours) == tick == decode(Topic.TICKS, encode(tick))


@relaxed
@given(
    symbols,
    event_times,
    st.floats(min_value=1e-4, max_value=1e12),
    st.floats(min_value=0, max_value=1e12),
)
def test_wire_bytes_equal_contract_encode_for_market_prices_and_sizes(symbol, t, price, size):
    tick = Tick(
        symbol=symbol, event_time_ms=t, price=price, size=size, source="synthetic", ingest_time_ms=NOW
    )
    assert encode_price_size_tick(symbol, t, price, size, "synthetic", NOW) == encode(tick)


def test_batch_encoding_equals_one_by_one_encoding():
    batch = encode_price_size_ticks(["A", "B"], [1, 2], [1.5, 2.5], [10.0, 0.0], "replay", NOW)
    assert batch == [
        encode_price_size_tick("A", 1, 1.5, 10.0, "replay", NOW),
        encode_price_size_tick("B", 2, 2.5, 0.0, "replay", NOW),
    ]


# --- the sequence guard: one chunk at once == row by row ------------------------------------------

chunk_rows = st.lists(
    st.tuples(st.integers(min_value=0, max_value=3), st.integers(min_value=0, max_value=120), st.booleans()),
    max_size=40,
)


@relaxed
@given(st.lists(chunk_rows, min_size=1, max_size=4), st.integers(min_value=1, max_value=6))
def test_vectorised_sequence_check_gives_the_same_verdicts_as_row_by_row(chunks, max_per_key):
    bulk = SequenceGuard(allowed_lateness_ms=20, dedupe_window_ms=40, max_per_key=max_per_key)
    rows = SequenceGuard(allowed_lateness_ms=20, dedupe_window_ms=40, max_per_key=max_per_key)
    for chunk in chunks:
        keys = [f"K{k}" for k, _, _ in chunk]
        times = np.array([t for _, t, _ in chunk], dtype=np.int64)
        eligible = np.array([e for _, _, e in chunk], dtype=bool)
        slots = np.array([bulk.slot(k) for k in keys], dtype=np.int64)
        fast = bulk.accept_in_order(slots, times, eligible)
        got, want = [], []
        for i, key in enumerate(keys):
            t = int(times[i])
            want.append(rows.check(key, t) if eligible[i] else "ineligible")
            if fast[i]:
                got.append(None)
            else:
                got.append(bulk.check(key, t) if eligible[i] else "ineligible")
        assert [getattr(v, "reason", v) for v in got] == [getattr(v, "reason", v) for v in want]
    # and the two remember the same: every later record gets the same verdict
    for key in ("K0", "K1", "K2", "K3"):
        for t in range(0, 130, 3):
            assert getattr(bulk.check(key, t), "reason", None) == getattr(rows.check(key, t), "reason", None)


def test_sequence_guard_accepts_a_strictly_rising_chunk_in_one_step_and_remembers_it():
    guard = SequenceGuard(allowed_lateness_ms=1_000, dedupe_window_ms=5_000)
    slots = np.array([guard.slot("A"), guard.slot("B"), guard.slot("A"), guard.slot("B")])
    times = np.array([100, 100, 101, 99], dtype=np.int64)
    fast = guard.accept_in_order(slots, times, np.ones(4, dtype=bool))
    assert fast.tolist() == [True, False, True, False]  # B goes back in time: judged row by row
    assert guard.check("A", 101).reason == "duplicate"
    assert guard.check("A", 102) is None


def test_sequence_guard_state_grows_past_its_initial_capacity():
    guard = SequenceGuard(allowed_lateness_ms=10, dedupe_window_ms=10, max_per_key=4)
    names = [f"S{i}" for i in range(300)]
    slots = np.array([guard.slot(s) for s in names], dtype=np.int64)
    assert guard.accept_in_order(slots, np.full(300, 7, dtype=np.int64), np.ones(300, dtype=bool)).all()
    assert all(guard.check(s, 7).reason == "duplicate" for s in names) and len(guard) == 300


# --- the whole vectorised path against the record path, through the real broker -------------------


def _chunk() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Good ticks of three symbols interleaved with one of every kind of trouble the rules catch."""
    rows: list[tuple[str, float, float, int]] = []
    for i in range(60):
        for sym in ("GOOD", "FINE", "OKAY"):
            rows.append((sym, 100.0 + i * 0.013, 10.0 + i, NOW - 60_000 + i * 10))
    trouble = [
        ("GOOD", 101.0, 5.0, NOW - 60_000 + 50),  # duplicate of an accepted time
        ("FINE", 101.0, 5.0, NOW - 59_000 + 5),  # late but inside the lateness: accepted
        ("OKAY", 101.0, 5.0, NOW - 200_000),  # out of order
        ("GOOD", math.nan, 5.0, NOW - 1),  # non finite
        ("GOOD", -1.0, 5.0, NOW - 2),  # non positive price
        ("FINE", 10.0, -5.0, NOW - 3),  # negative volume
        ("OKAY", 10.0, 1.0, NOW + 60_000),  # future
        ("OKAY", 10.0, 1.0, NOW - 3 * 86_400_000),  # stale
        ("ZZZZ", 10.0, 1.0, NOW - 4),  # unknown symbol
        (" good", 10.5, 1.0, NOW - 5),  # needs cleaning: becomes GOOD
        ("bad sym", 10.0, 1.0, NOW - 6),  # bad symbol
        ("LOW", 0.123456, 1.0, NOW - 7),  # under a dollar: rounded to 0.0001
    ]
    for j, row in enumerate(trouble):
        rows.insert(7 + j * 13, row)
    syms = [r[0] for r in rows]
    return (
        syms,
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows]),
        np.array([r[3] for r in rows], dtype=np.int64),
    )


def _comparable(values: list[dict]) -> list[dict]:
    """Records without the refusal time, with the topic named without the run's private prefix."""
    out = []
    for d in values:
        row = {k: v for k, v in d.items() if k not in ("failed_at_ms", "_key")} | {"key": d["_key"]}
        if "topic" in row:
            row["topic"] = row["topic"].split(".", 1)[1]
        out.append(row)
    return out


@pytest.mark.slow
def test_vectorised_path_sends_exactly_what_the_record_path_sends(bootstrap_servers, settings):
    from tests.ingest.conftest import create_topics, delete_topics

    instruments = Instruments([Instrument(s, "crypto", "24/7") for s in ("GOOD", "FINE", "OKAY", "LOW")])
    syms, prices, sizes, times = _chunk()
    n = len(syms)
    results = {}
    for way in ("vectorised", "records"):
        topics = create_topics(bootstrap_servers, f"ingest-fast-{way}-{uuid.uuid4().hex[:6]}")
        try:
            reader = Reader(bootstrap_servers, topics)
            sink = KafkaSink(bootstrap_servers, settings, "synthetic")
            pipeline = Pipeline(sink, settings, instruments, topics=topics, clock=lambda: NOW)
            if way == "vectorised":
                # two chunks, so the second one meets the state the first one left
                half = n // 2
                for part in (slice(0, half), slice(half, n)):
                    pipeline.process_tick_arrays(
                        syms[part], prices[part], sizes[part], times[part], Source.SYNTHETIC, NOW
                    )
            else:
                for i in range(n):
                    raw = {"symbol": syms[i], "event_time_ms": int(times[i]), "price": float(prices[i])}
                    raw["size"] = float(sizes[i])
                    pipeline.process(RawRecord(Topic.TICKS, raw, Source.SYNTHETIC, NOW))
            assert pipeline.finish("synthetic") == 0
            stats = pipeline.stats
            results[way] = (
                stats.read,
                stats.accepted,
                dict(stats.rejected),
                _comparable(reader.read(Topic.TICKS, stats.accepted)),
                _comparable(reader.read(Topic.DEADLETTER, stats.dead_lettered)),
            )
        finally:
            delete_topics(bootstrap_servers, list(topics.values()))
    fast, slow = results["vectorised"], results["records"]
    assert fast[:3] == slow[:3]
    assert fast[0] == n and fast[1] == 3 * 60 + 3
    assert {k: v for k, v in fast[2].items()} == {
        "duplicate": 1,
        "out_of_order": 1,
        "non_finite": 1,
        "non_positive_price": 1,
        "negative_volume": 1,
        "future_time": 1,
        "stale_time": 1,
        "unknown_symbol": 1,
        "bad_symbol": 1,
    }
    by_key = lambda rows: sorted(rows, key=lambda d: (d["key"], d["event_time_ms"]))  # noqa: E731
    assert by_key(fast[3]) == by_key(slow[3])
    assert fast[4] == slow[4]  # one partition: the dead letters in the same order, with the same payloads
    assert {d["price"] for d in fast[3] if d["symbol"] == "LOW"} == {0.1235}
    assert json.dumps(by_key(fast[3])[0])  # plain JSON values


@pytest.mark.slow
def test_vectorised_path_sends_float_times_through_the_record_rules(bootstrap_servers, own_topics, settings):
    reader = Reader(bootstrap_servers, own_topics)
    instruments = Instruments([Instrument("GOOD", "crypto", "24/7")])
    sink = KafkaSink(bootstrap_servers, settings, "synthetic")
    pipeline = Pipeline(sink, settings, instruments, topics=own_topics, clock=lambda: NOW)
    times = np.array([NOW - 2.0, NOW - 1.5])  # whole and fractional milliseconds as floats
    passed = pipeline.process_tick_arrays(
        ["GOOD", "GOOD"], np.array([10.0, 11.0]), np.array([1.0, 1.0]), times, Source.SYNTHETIC, NOW
    )
    assert pipeline.finish("synthetic") == 0
    assert passed == 1 and dict(pipeline.stats.rejected) == {"wrong_type": 1}
    (tick,) = reader.read(Topic.TICKS, 1)
    assert tick["event_time_ms"] == NOW - 2 and isinstance(tick["event_time_ms"], int)
