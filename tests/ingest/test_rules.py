"""The validation rules as pure functions: examples and hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common.contract import MAX_PRICE, MAX_VOLUME, MIN_PRICE, RejectReason, Source, Tick, Topic
from ingest.rules import (
    Limits,
    Rejection,
    clean_bar,
    clean_tick,
    normalise,
    parse_json,
    round_to_tick,
    tick_arrays_ok,
)
from ingest.sequence import SequenceGuard

NOW = 1_750_000_000_000
LIMITS = Limits(future_tolerance_ms=5_000, max_age_ms=86_400_000, known=None)
prices = st.floats(min_value=0.0001, max_value=1e6, allow_nan=False, allow_infinity=False)
any_float = st.floats(allow_nan=True, allow_infinity=True)
# the machine is shared with other test runs: no per-example deadline, no slow-generation failure
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150)


def tick(**kw):
    return {"symbol": "AAPL", "event_time_ms": NOW, "price": 101.5, "size": 10.0} | kw


def test_clean_tick_cleans_symbol_case_and_numeric_strings_into_the_complete_wire_message():
    out = clean_tick(
        tick(symbol=" aapl ", price="101.25", size="3", event_time_ms=str(NOW)),
        NOW,
        LIMITS,
        source=Source.YAHOO,
        ingest_time_ms=NOW + 7,
    )
    assert out == {
        "schema_version": 1,
        "symbol": "AAPL",
        "event_time_ms": NOW,
        "price": 101.25,
        "size": 3.0,
        "source": "yahoo",
        "ingest_time_ms": NOW + 7,
    }


def test_normalise_never_turns_a_boolean_into_a_number_and_drops_unknown_fields():
    assert normalise(Topic.TICKS, tick(price=True, venue="X")) == tick(price=True)


def test_clean_tick_refuses_boolean_price_as_wrong_type():
    assert clean_tick(tick(price=True), NOW, LIMITS).reason == RejectReason.WRONG_TYPE


def test_clean_tick_refuses_crossed_quote():
    assert clean_tick(tick(bid=10.0, ask=9.0), NOW, LIMITS).reason == RejectReason.CROSSED_PRICES


def test_clean_tick_refuses_unknown_symbol_when_a_universe_is_given():
    limits = Limits(known={"AAPL"}.__contains__)
    assert clean_tick(tick(symbol="ZZZZ"), NOW, limits).reason == RejectReason.UNKNOWN_SYMBOL


def test_clean_tick_refuses_a_nul_in_the_exchange_the_stream_would_otherwise_choke_on():
    assert clean_tick(tick(exchange="X\u0000Y"), NOW, LIMITS).reason == RejectReason.BAD_TEXT


def test_a_tiny_price_is_judged_after_rounding_to_the_tick_size():
    sizes = {"PENNY": 0.01}.get
    out = clean_tick(tick(symbol="PENNY", price=0.00004), NOW, LIMITS, tick_size=sizes)
    assert out == Rejection(RejectReason.NON_POSITIVE_PRICE, "price=0.0 is not > 0.0")
    assert clean_tick(tick(symbol="PENNY", price=0.00006), NOW, LIMITS, tick_size=sizes)["price"] == 0.0001


def test_parse_json_refuses_oversize_before_parsing():
    assert parse_json(b"{" + b" " * 70_000 + b"}").reason == RejectReason.OVERSIZE


def test_round_to_tick_uses_cents_above_one_dollar_and_hundredths_of_cents_below():
    assert round_to_tick(101.23456, 0.01) == 101.23
    assert round_to_tick(0.123456, 0.01) == 0.1235


def test_daily_bar_accepted_without_age_limit():
    bar = {"symbol": "AAPL", "interval": "1d", "event_time_ms": 0, "open": 1.5, "high": 2.0, "low": 1.0}
    bar |= {"close": 1.8, "volume": 10}
    assert clean_bar(bar, NOW, Limits(max_age_ms=None))["close"] == 1.8


@relaxed
@given(o=prices, h=prices, lo=prices, c=prices)
def test_ohlc_rule_accepts_exactly_when_low_below_open_close_below_high(o, h, lo, c):
    bar = {"symbol": "AAPL", "interval": "1d", "event_time_ms": NOW, "open": o, "high": h, "low": lo}
    out = clean_bar(bar | {"close": c, "volume": 1.0}, NOW, LIMITS)
    assert isinstance(out, Rejection) != (lo <= o <= h and lo <= c <= h)
    if isinstance(out, Rejection):
        assert out.reason == RejectReason.CROSSED_PRICES


@relaxed
@given(offset=st.integers(min_value=-(10**11), max_value=10**11))
def test_event_time_rule_window(offset):
    result = clean_tick(tick(event_time_ms=NOW + offset), NOW, LIMITS)
    if offset > 5_000:
        assert result.reason == RejectReason.FUTURE_TIME
    elif offset < -86_400_000:
        assert result.reason == RejectReason.STALE_TIME
    else:
        assert result["event_time_ms"] == NOW + offset


@relaxed
@given(price=any_float, size=any_float)
def test_clean_tick_accepts_only_finite_prices_and_sizes_within_the_contract_ranges(price, size):
    out = clean_tick(tick(price=price, size=size), NOW, LIMITS)
    finite = math.isfinite(price) and math.isfinite(size)
    valid = finite and MIN_PRICE <= price <= MAX_PRICE and 0 <= size <= MAX_VOLUME
    assert isinstance(out, Rejection) != valid
    if not valid:
        expected = (
            RejectReason.NON_FINITE
            if not math.isfinite(price)
            else RejectReason.NON_POSITIVE_PRICE
            if price <= 0
            else RejectReason.OUT_OF_RANGE
            if not MIN_PRICE <= price <= MAX_PRICE
            else RejectReason.NON_FINITE
            if not math.isfinite(size)
            else RejectReason.NEGATIVE_VOLUME
            if size < 0
            else RejectReason.OUT_OF_RANGE
        )
        assert out.reason == expected


@relaxed
@given(
    o=prices,
    spread=st.floats(min_value=-10, max_value=10, allow_nan=False),
    c=prices,
    volume=st.floats(min_value=-5, max_value=1e9, allow_nan=False),
)
def test_clean_bar_accepted_bars_satisfy_every_rule(o, spread, c, volume):
    bar = {"symbol": "MSFT", "interval": "1m", "event_time_ms": NOW, "open": o, "close": c, "volume": volume}
    bar |= {"high": max(o, c) + spread, "low": min(o, c) - spread}
    out = clean_bar(bar, NOW, LIMITS)
    if isinstance(out, Rejection):
        assert out.reason in {
            RejectReason.CROSSED_PRICES,
            RejectReason.NEGATIVE_VOLUME,
            RejectReason.NON_POSITIVE_PRICE,
            RejectReason.OUT_OF_RANGE,
        }
    else:
        assert out["low"] <= min(out["open"], out["close"]) <= max(out["open"], out["close"]) <= out["high"]
        assert out["volume"] >= 0 and out["low"] > 0


@relaxed
@given(
    st.dictionaries(
        st.sampled_from(["symbol", "event_time_ms", "price", "size", "bid", "exchange", "schema_version"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            any_float,
            st.text(max_size=12),
            st.lists(st.integers(), max_size=2),
        ),
    )
)
def test_clean_tick_never_raises_and_accepted_ticks_fit_the_contract(obj):
    out = clean_tick(obj, NOW, LIMITS)
    if not isinstance(out, Rejection):
        assert Tick.model_validate(out).model_dump(exclude_none=True) == out  # pydantic agrees


@relaxed
@given(
    rows=st.lists(
        st.tuples(any_float, any_float, st.integers(min_value=-(10**9), max_value=10**9), st.booleans()),
        min_size=1,
        max_size=30,
    ),
    ingest_offset=st.sampled_from([0, 10_000, -(10**13)]),
)
@example(rows=[(math.nan, 0.0, 0, True)], ingest_offset=0)  # a NaN price once passed the screen (CI)
def test_vectorised_tick_screen_agrees_with_the_scalar_rules(rows, ingest_offset):
    p = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows])
    t = np.array([NOW + r[2] for r in rows], dtype=np.int64)
    known = np.array([r[3] for r in rows])
    names = ["AAPL" if k else "ZZZZ" for k in known]
    limits = Limits(future_tolerance_ms=5_000, max_age_ms=86_400_000, known={"AAPL"}.__contains__)
    ingest_ms = NOW + ingest_offset
    screened = tick_arrays_ok(p, s, t, known, NOW, limits, ingest_ms).tolist()
    scalar = [
        not isinstance(
            clean_tick(
                tick(symbol=n, price=float(a), size=float(b), event_time_ms=int(c)),
                NOW,
                limits,
                ingest_time_ms=ingest_ms,
            ),
            Rejection,
        )
        for n, a, b, c in zip(names, p, s, t, strict=True)
    ]
    assert screened == scalar


@relaxed
@given(st.lists(st.tuples(st.sampled_from(["A", "B"]), st.integers(min_value=0, max_value=200)), max_size=80))
def test_sequence_guard_accepts_each_key_and_time_once_and_never_far_behind(events):
    guard = SequenceGuard(allowed_lateness_ms=50, dedupe_window_ms=100)
    accepted: set[tuple[str, int]] = set()
    newest: dict[str, int] = {}
    for key, t in events:
        result = guard.check(key, t)
        if result is None:
            assert (key, t) not in accepted
            assert t >= newest.get(key, t) - 50
            accepted.add((key, t))
            newest[key] = max(newest.get(key, t), t)
        elif result.reason == RejectReason.DUPLICATE:
            assert (key, t) in accepted
        else:
            assert result.reason == RejectReason.OUT_OF_ORDER and t < newest[key] - 50
