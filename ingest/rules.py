"""Validation and cleaning rules: pure functions from plain values to a clean record or a Rejection.

Order of checks for one raw value (the first failure wins, so each record has exactly one reason):
size -> JSON -> object -> schema_version -> required fields -> types (with safe cleaning: numeric
strings, integral floats for times, symbol case and blanks) -> finite -> positive prices -> volume
-> crossed prices -> event time window -> known symbol. Duplicates and order need history and live
in :mod:`ingest.sequence`. Rounding to the instrument's tick size happens after all checks pass.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.contract import (
    MAX_MESSAGE_BYTES,
    SCHEMA_VERSION,
    SYMBOL_PATTERN,
    Bar,
    BarInterval,
    RejectReason,
    Tick,
    Topic,
)

SYMBOL_RE = re.compile(SYMBOL_PATTERN)
SERVICE_FIELDS = frozenset({"schema_version", "source", "ingest_time_ms"})
"""Fields the ingest service fills itself; a raw record does not need them."""


def _required(model: type) -> tuple[str, ...]:
    return tuple(n for n, f in model.model_fields.items() if f.is_required() and n not in SERVICE_FIELDS)


REQUIRED: dict[Topic, tuple[str, ...]] = {Topic.TICKS: _required(Tick), Topic.BARS: _required(Bar)}
TICK_FLOATS = ("price", "size", "bid", "ask", "day_volume")
BAR_FLOATS = ("open", "high", "low", "close", "adj_close", "volume")
_STR_LIMITS = {"currency": 8, "exchange": 16}
_INTERVALS = frozenset(i.value for i in BarInterval)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was refused: a contract reason code and a detail naming the offending value."""

    reason: RejectReason
    detail: str


class _Reject(Exception):
    """Internal control flow of the record cleaners; never escapes this module."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        self.rejection = Rejection(reason, detail[:500])


@dataclass(frozen=True)
class Limits:
    """The knobs of the stateless rules."""

    future_tolerance_ms: int = 5_000
    max_age_ms: int | None = 24 * 3600 * 1000
    known: Callable[[str], bool] | None = None
    """Returns True for a known symbol; None accepts every well-formed symbol."""


# --- parsing -----------------------------------------------------------------------------------------


def parse_json(raw: bytes | str) -> dict[str, Any] | Rejection:
    """Bytes off the wire -> a JSON object, or oversize / malformed_json / not_an_object."""
    size = len(raw.encode("utf-8") if isinstance(raw, str) else raw)
    if size > MAX_MESSAGE_BYTES:
        return Rejection(RejectReason.OVERSIZE, f"{size} bytes > limit {MAX_MESSAGE_BYTES}")
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return Rejection(RejectReason.MALFORMED_JSON, f"not JSON: {exc}")
    if not isinstance(obj, dict):
        return Rejection(RejectReason.NOT_AN_OBJECT, f"JSON {type(obj).__name__}, expected an object")
    return obj


# --- type cleaning -----------------------------------------------------------------------------------


def as_float(name: str, value: Any) -> float:
    """A number, or a numeric string (cleaned); booleans and other types are wrong_type."""
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _Reject(RejectReason.WRONG_TYPE, f"{name}={value!r} is not a number")


def as_epoch_ms(name: str, value: Any) -> int:
    """Integer epoch milliseconds; integral floats and digit strings are cleaned to int."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = as_float(name, value)
    if not math.isfinite(number):
        raise _Reject(RejectReason.NON_FINITE, f"{name}={value!r} is not finite")
    if number != int(number):
        raise _Reject(RejectReason.WRONG_TYPE, f"{name}={value!r} is not whole milliseconds")
    return int(number)


def clean_symbol(value: Any) -> str:
    """Symbol case and surrounding blanks are cleaned; anything else malformed is bad_symbol."""
    if not isinstance(value, str):
        raise _Reject(RejectReason.WRONG_TYPE, f"symbol={value!r} is not a string")
    symbol = value.strip().upper()
    if not SYMBOL_RE.match(symbol):
        raise _Reject(RejectReason.BAD_SYMBOL, f"symbol={value!r} is not a valid symbol")
    return symbol


def is_clean_symbol(value: object) -> bool:
    """True when `value` is a valid symbol already in its clean form (cleaning would not change it)."""
    return isinstance(value, str) and SYMBOL_RE.match(value) is not None and value == value.strip()


def _clean_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _Reject(RejectReason.WRONG_TYPE, f"{name}={value!r} is not a string")
    limit = _STR_LIMITS.get(name)
    if limit is not None and len(value) > limit:
        raise _Reject(RejectReason.WRONG_TYPE, f"{name}={value[:40]!r} is longer than {limit}")
    return value


# --- value rules -------------------------------------------------------------------------------------


def check_finite(values: Mapping[str, float | None]) -> Rejection | None:
    for name, v in values.items():
        if v is not None and not math.isfinite(v):
            return Rejection(RejectReason.NON_FINITE, f"{name}={v!r} is not finite")
    return None


def check_positive_prices(prices: Mapping[str, float | None]) -> Rejection | None:
    for name, v in prices.items():
        if v is not None and not v > 0:
            return Rejection(RejectReason.NON_POSITIVE_PRICE, f"{name}={v!r} is not > 0")
    return None


def check_volume(volumes: Mapping[str, float | None]) -> Rejection | None:
    for name, v in volumes.items():
        if v is not None and v < 0:
            return Rejection(RejectReason.NEGATIVE_VOLUME, f"{name}={v!r} is negative")
    return None


def check_ohlc(open_: float, high: float, low: float, close: float) -> Rejection | None:
    """low <= open, close <= high."""
    if not (low <= open_ <= high and low <= close <= high):
        return Rejection(
            RejectReason.CROSSED_PRICES, f"need low<=open,close<=high: o={open_} h={high} l={low} c={close}"
        )
    return None


def check_quote(bid: float | None, ask: float | None) -> Rejection | None:
    """A quote is crossed when bid > ask."""
    if bid is not None and ask is not None and bid > ask:
        return Rejection(RejectReason.CROSSED_PRICES, f"bid={bid} > ask={ask}")
    return None


def check_event_time(event_ms: int, now_ms: int, limits: Limits) -> Rejection | None:
    """Not ahead of now by more than the tolerance, not older than the age limit (when set)."""
    if event_ms < 0:
        return Rejection(RejectReason.WRONG_TYPE, f"event_time_ms={event_ms} is negative")
    if event_ms > now_ms + limits.future_tolerance_ms:
        ahead = event_ms - now_ms
        return Rejection(RejectReason.FUTURE_TIME, f"event_time_ms={event_ms} is {ahead} ms ahead")
    if limits.max_age_ms is not None and event_ms < now_ms - limits.max_age_ms:
        return Rejection(RejectReason.STALE_TIME, f"event_time_ms={event_ms} is {now_ms - event_ms} ms old")
    return None


def check_known(symbol: str, limits: Limits) -> Rejection | None:
    if limits.known is not None and not limits.known(symbol):
        return Rejection(RejectReason.UNKNOWN_SYMBOL, f"symbol={symbol} is not in the instrument list")
    return None


def round_to_tick(price: float, tick: float) -> float:
    """Round a price to the nearest multiple of the tick size (equities under $1 trade in 0.0001)."""
    return float(round_to_ticks(np.array([price]), np.array([tick]))[0])


def round_to_ticks(prices: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Vectorised :func:`round_to_tick`; the result is cleared of float noise at 9 decimals."""
    effective = np.where((ticks >= 0.01) & (prices < 1.0), 0.0001, ticks)
    return np.round(np.round(prices / effective) * effective, 9)


def tick_arrays_ok(
    prices: np.ndarray, sizes: np.ndarray, times: np.ndarray, known: np.ndarray, now_ms: int, limits: Limits
) -> np.ndarray:
    """Vectorised screen of price-and-size ticks: True where :func:`clean_tick` would accept the row.

    Rows marked False go through :func:`clean_tick` one by one for their exact reason, so this screen
    only has to be never more permissive than the scalar rules (the tests check they agree).
    """
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(prices) & np.isfinite(sizes) & (prices > 0) & (sizes >= 0)
    ok &= (times >= 0) & (times <= now_ms + limits.future_tolerance_ms)
    if limits.max_age_ms is not None:
        ok &= times >= now_ms - limits.max_age_ms
    return ok & known


# --- whole records -----------------------------------------------------------------------------------


def _common(obj: Mapping[str, Any], topic: Topic) -> dict[str, Any]:
    version = obj.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise _Reject(RejectReason.UNSUPPORTED_SCHEMA_VERSION, f"schema_version={version!r}")
    for name in REQUIRED[topic]:
        if obj.get(name) is None:
            raise _Reject(RejectReason.MISSING_FIELD, f"{name} is missing")
    return {
        "symbol": clean_symbol(obj["symbol"]),
        "event_time_ms": as_epoch_ms("event_time_ms", obj["event_time_ms"]),
    }


def _floats(obj: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, float | None]:
    return {n: (None if obj.get(n) is None else as_float(n, obj[n])) for n in names}


def _first(*checks: Rejection | None) -> None:
    for rejection in checks:
        if rejection is not None:
            raise _Reject(rejection.reason, rejection.detail)


def clean_tick(obj: Mapping[str, Any], now_ms: int, limits: Limits) -> dict[str, Any] | Rejection:
    """A raw tick object -> the contract fields (without source / ingest time), or a Rejection."""
    try:
        out = _common(obj, Topic.TICKS)
        nums = _floats(obj, TICK_FLOATS)
        _first(
            check_finite(nums),
            check_positive_prices({k: nums[k] for k in ("price", "bid", "ask")}),
            check_volume({k: nums[k] for k in ("size", "day_volume")}),
            check_quote(nums["bid"], nums["ask"]),
            check_event_time(out["event_time_ms"], now_ms, limits),
            check_known(out["symbol"], limits),
        )
        out.update({k: v for k, v in nums.items() if v is not None})
        for name in ("currency", "exchange"):
            if obj.get(name) is not None:
                out[name] = _clean_str(name, obj[name])
        return out
    except _Reject as exc:
        return exc.rejection


def clean_bar(obj: Mapping[str, Any], now_ms: int, limits: Limits) -> dict[str, Any] | Rejection:
    """A raw bar object -> the contract fields (without source / ingest time), or a Rejection."""
    try:
        out = _common(obj, Topic.BARS)
        interval = obj["interval"]
        if not isinstance(interval, str) or interval not in _INTERVALS:
            allowed = sorted(_INTERVALS)
            raise _Reject(RejectReason.WRONG_TYPE, f"interval={interval!r} is not one of {allowed}")
        out["interval"] = interval
        nums = _floats(obj, BAR_FLOATS)
        _first(
            check_finite(nums),
            check_positive_prices({k: nums[k] for k in ("open", "high", "low", "close", "adj_close")}),
            check_volume({"volume": nums["volume"]}),
            check_ohlc(nums["open"], nums["high"], nums["low"], nums["close"]),  # type: ignore[arg-type]
            check_event_time(out["event_time_ms"], now_ms, limits),
            check_known(out["symbol"], limits),
        )
        out.update({k: v for k, v in nums.items() if v is not None})
        return out
    except _Reject as exc:
        return exc.rejection


def apply_tick_size(record: dict[str, Any], topic: Topic, tick: float | None) -> dict[str, Any]:
    """Round every price field of a clean record to `tick` (no-op without a tick size)."""
    if tick is None:
        return record
    names = ("price", "bid", "ask") if topic == Topic.TICKS else ("open", "high", "low", "close")
    for name in names:
        if name in record:
            record[name] = round_to_tick(record[name], tick)
    return record
