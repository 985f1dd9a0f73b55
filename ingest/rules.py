"""Ingest's validation: source cleaning, then the contract's rules, then ingest's own policy. Pure.

A source record becomes a wire message in four steps (the first failure wins, so each record has
exactly one reason):

1. **normalise** (:func:`normalise`): what a source may hand over loosely typed is cleaned without
   loss: the symbol's case and blanks, numbers written as text (CSV cells), whole-number floats for
   times (pandas frames). Nothing else is coerced: a boolean is never a number. Unknown fields drop.
2. the service's fields (``schema_version`` when the record has none, ``source``, ``ingest_time_ms``)
   and the instrument's **tick size**: prices are rounded *before* they are judged, so a tiny price
   that rounds to 0 is refused here, not published for the stream to refuse.
3. **the contract** (:func:`common.contract.check`, the very function the stream's slow path calls and
   whose vectorised twin its fast path runs): types, required fields, ranges, text, pairs, time window.
4. **ingest's policy**: live events no older than ``max_age_ms``, symbols in the instrument list.
   Duplicates and order need history and live in :mod:`ingest.sequence`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from common.contract import (
    EVENT_MS,
    INGEST_MS,
    PRICE,
    SCHEMA_VERSION,
    SYMBOL,
    SYMBOL_PATTERN,
    VOLUME,
    Rejection,
    RejectReason,
    Rule,
    RuleKind,
    Source,
    Topic,
    check,
    fields_of,
    load_json,
)

SERVICE_FIELDS = frozenset({"schema_version", "source", "ingest_time_ms"})
"""Fields the ingest service fills itself; a source record does not need them."""

REQUIRED: dict[Topic, tuple[str, ...]] = {
    t: tuple(n for n in fields_of(t).required if n not in SERVICE_FIELDS) for t in (Topic.TICKS, Topic.BARS)
}
PRICE_FIELDS: dict[Topic, tuple[str, ...]] = {
    Topic.TICKS: ("price", "bid", "ask"),
    Topic.BARS: ("open", "high", "low", "close", "adj_close"),
}
parse_json = load_json
"""Bytes off the wire -> a JSON object, or oversize / malformed_json / not_an_object."""


@dataclass(frozen=True)
class Limits:
    """The knobs of the stateless rules."""

    future_tolerance_ms: int = 5_000
    max_age_ms: int | None = 24 * 3600 * 1000
    known: Callable[[str], bool] | None = None
    """Returns True for a known symbol; None accepts every well-formed symbol."""


# --- 1. normalise ------------------------------------------------------------------------------------


def _clean_number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def _clean_integer(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        value = _clean_number(text)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def normalise(topic: Topic, obj: Mapping[str, Any]) -> dict[str, Any]:
    """A source record's contract fields, cleaned without loss (see the module's step 1)."""
    out: dict[str, Any] = {}
    for f in fields_of(topic).fields:
        value = obj.get(f.name)
        if value is None:
            continue
        if f.rule.kind is RuleKind.SYMBOL and isinstance(value, str):
            value = value.strip().upper()
        elif f.rule.kind is RuleKind.NUMBER:
            value = _clean_number(value)
        elif f.rule.kind is RuleKind.INTEGER:
            value = _clean_integer(value)
        out[f.name] = value
    return out


# --- 2. tick size ------------------------------------------------------------------------------------


def round_to_tick(price: float, tick: float) -> float:
    """Round a price to the nearest multiple of the tick size (equities under $1 trade in 0.0001)."""
    return float(round_to_ticks(np.array([price]), np.array([tick]))[0])


def round_to_ticks(prices: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Vectorised :func:`round_to_tick`; the result is cleared of float noise at 9 decimals."""
    effective = np.where((ticks >= 0.01) & (prices < 1.0), 0.0001, ticks)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.round(np.round(prices / effective) * effective, 9)


def apply_tick_size(message: dict[str, Any], topic: Topic, tick: float | None) -> dict[str, Any]:
    """Round every finite price of a message to `tick` (no-op without a tick size); other values are
    left for the contract to judge."""
    if not tick:
        return message
    for name in PRICE_FIELDS[topic]:
        value = message.get(name)
        if isinstance(value, float | int) and not isinstance(value, bool):
            try:
                price = float(value)
            except OverflowError:  # an integer too long for a double: the contract refuses it
                continue
            if math.isfinite(price):
                message[name] = round_to_tick(price, tick)
    return message


# --- 4. ingest's policy ------------------------------------------------------------------------------


def check_policy(message: Mapping[str, Any], now_ms: int, limits: Limits) -> Rejection | None:
    """Ingest's own rules on a message the contract accepted: live age and the instrument list."""
    event_ms = message["event_time_ms"]
    if limits.max_age_ms is not None and event_ms < now_ms - limits.max_age_ms:
        return Rejection(RejectReason.STALE_TIME, f"event_time_ms={event_ms} is {now_ms - event_ms} ms old")
    symbol = message["symbol"]
    if limits.known is not None and not limits.known(symbol):
        return Rejection(RejectReason.UNKNOWN_SYMBOL, f"symbol={symbol} is not in the instrument list")
    return None


def judge(topic: Topic, message: Mapping[str, Any], now_ms: int, limits: Limits) -> Rejection | None:
    """Ingest's decision on a complete wire message: the contract's rules, then ingest's policy."""
    return check(topic, message, now_ms, limits.future_tolerance_ms) or check_policy(message, now_ms, limits)


# --- whole records -----------------------------------------------------------------------------------


def clean(
    topic: Topic,
    obj: Mapping[str, Any],
    now_ms: int,
    limits: Limits,
    *,
    source: Source = Source.REPLAY,
    ingest_time_ms: int | None = None,
    tick_size: Callable[[str], float | None] | None = None,
) -> dict[str, Any] | Rejection:
    """A source record -> the complete wire message (steps 1-4), or the Rejection of its first broken rule."""
    message = normalise(topic, obj)
    message.setdefault("schema_version", SCHEMA_VERSION)
    message["source"] = source.value
    message["ingest_time_ms"] = now_ms if ingest_time_ms is None else ingest_time_ms
    symbol = message.get("symbol")
    if tick_size is not None and isinstance(symbol, str):
        apply_tick_size(message, topic, tick_size(symbol))
    rejection = judge(topic, message, now_ms, limits)
    if rejection is not None:
        return rejection
    for name in (f.name for f in fields_of(topic).fields if f.rule.kind is RuleKind.NUMBER):
        if name in message:
            message[name] = float(message[name])  # canonical wire form: 10 -> 10.0
    return message


def clean_tick(
    obj: Mapping[str, Any], now_ms: int, limits: Limits, **kwargs: Any
) -> dict[str, Any] | Rejection:
    """A source tick -> the complete wire message, or a Rejection (see :func:`clean`)."""
    return clean(Topic.TICKS, obj, now_ms, limits, **kwargs)


def clean_bar(
    obj: Mapping[str, Any], now_ms: int, limits: Limits, **kwargs: Any
) -> dict[str, Any] | Rejection:
    """A source bar -> the complete wire message, or a Rejection (see :func:`clean`)."""
    return clean(Topic.BARS, obj, now_ms, limits, **kwargs)


def is_clean_symbol(value: object) -> bool:
    """True when `value` is a valid symbol already in its clean form (cleaning would not change it)."""
    return isinstance(value, str) and value == value.strip().upper() and SYMBOL.accepts_one(value)


# --- vectorised screen of the synthetic source's price-and-size ticks ---------------------------------


def _accepts(rule: Rule, values: np.ndarray) -> np.ndarray:
    return rule.accepts(pd.Series(values))


def tick_arrays_ok(
    prices: np.ndarray,
    sizes: np.ndarray,
    times: np.ndarray,
    known: np.ndarray,
    now_ms: int,
    limits: Limits,
    ingest_time_ms: int,
) -> np.ndarray:
    """Vectorised screen of price-and-size ticks (prices already rounded): True where :func:`clean`
    would accept the row with these values. Built from the contract's rules; rows marked False go
    through :func:`clean` one by one for their exact reason, so the screen only has to be never more
    permissive than the scalar rules (tests/ingest/test_rules.py checks they agree)."""
    ok = _accepts(PRICE, prices) & _accepts(VOLUME, sizes) & _accepts(EVENT_MS, times)
    ok &= times <= now_ms + limits.future_tolerance_ms
    if limits.max_age_ms is not None:
        ok &= times >= now_ms - limits.max_age_ms
    ingest_ok = bool(_accepts(INGEST_MS, np.array([ingest_time_ms]))[0]) and (
        ingest_time_ms <= now_ms + limits.future_tolerance_ms
    )
    return ok & known & ingest_ok


__all__ = [
    "REQUIRED",
    "SYMBOL_PATTERN",
    "Limits",
    "Rejection",
    "apply_tick_size",
    "check_policy",
    "clean",
    "clean_bar",
    "clean_tick",
    "is_clean_symbol",
    "judge",
    "normalise",
    "parse_json",
    "round_to_tick",
    "round_to_ticks",
    "tick_arrays_ok",
]
