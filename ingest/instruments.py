"""The instrument universe: which symbols are known, their tick size and their trading calendar."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import exchange_calendars as xcals
import pandas as pd

from common.contract import SYMBOL_PATTERN
from ingest.errors import SymbolFileError

SYMBOL_RE = re.compile(SYMBOL_PATTERN)
REQUIRED_COLUMNS = ("symbol", "asset_class")
ALWAYS_OPEN = "24/7"
WEEKDAYS = "24/5"
DEFAULT_TICK = {"equity": 0.01, "etf": 0.01, "index": 0.01, "crypto": 0.01, "fx": 0.00001}


@dataclass(frozen=True)
class Instrument:
    symbol: str
    asset_class: str = "equity"
    calendar: str = "XNYS"
    tick_size: float = 0.01
    currency: str = "USD"


class Instruments:
    """A symbol -> Instrument map with market-hours answers."""

    def __init__(self, items: list[Instrument] | None = None) -> None:
        self._by_symbol: dict[str, Instrument] = {i.symbol: i for i in items or []}

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._by_symbol

    def __len__(self) -> int:
        return len(self._by_symbol)

    def __iter__(self):
        return iter(self._by_symbol.values())

    def get(self, symbol: str) -> Instrument | None:
        return self._by_symbol.get(symbol)

    def add(self, instrument: Instrument) -> None:
        self._by_symbol[instrument.symbol] = instrument

    @property
    def symbols(self) -> list[str]:
        return list(self._by_symbol)

    def tick_size(self, symbol: str) -> float | None:
        inst = self._by_symbol.get(symbol)
        return inst.tick_size if inst else None

    def is_trading(self, symbol: str, when_ms: int) -> bool:
        """True when `symbol`'s market is open at `when_ms` (crypto always; FX on weekdays)."""
        inst = self._by_symbol.get(symbol)
        return is_open(inst.calendar if inst else ALWAYS_OPEN, when_ms)


def is_open(calendar: str, when_ms: int) -> bool:
    """Is a market following `calendar` (an exchange_calendars code, 24/7 or 24/5) open at `when_ms`?"""
    ts = pd.Timestamp(when_ms, unit="ms", tz="UTC")
    if calendar == ALWAYS_OPEN:
        return True
    if calendar == WEEKDAYS:
        return ts.weekday() < 5
    cal = _calendar(calendar)
    minute = ts.floor("min")
    if minute < cal.first_minute or minute > cal.last_minute:
        return False
    return bool(cal.is_open_on_minute(minute))


def session_key(calendar: str, when_ms: int) -> str:
    """An identifier of the trading session containing `when_ms` (its date in the exchange's zone)."""
    ts = pd.Timestamp(when_ms, unit="ms", tz="UTC")
    if calendar in (ALWAYS_OPEN, WEEKDAYS):
        return ts.strftime("%Y-%m-%d")
    return ts.tz_convert(_calendar(calendar).tz).strftime("%Y-%m-%d")


@lru_cache(maxsize=16)
def _calendar(code: str) -> xcals.ExchangeCalendar:
    try:
        return xcals.get_calendar(code)
    except xcals.errors.InvalidCalendarName as exc:
        raise SymbolFileError(f"unknown exchange calendar {code!r}") from exc


def load_instruments(path: Path | str) -> Instruments:
    """Read an instruments CSV (columns symbol, asset_class[, calendar, tick_size, currency])."""
    path = Path(path)
    if not path.is_file():
        raise SymbolFileError(f"symbols file {path} does not exist")
    items: list[Instrument] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SymbolFileError(
                f"symbols file {path} lacks column(s) {', '.join(missing)}; "
                f"found {reader.fieldnames}; expected at least {', '.join(REQUIRED_COLUMNS)}"
            )
        for line, row in enumerate(reader, start=2):
            items.append(_parse_row(path, line, row))
    if not items:
        raise SymbolFileError(f"symbols file {path} has no instruments")
    return Instruments(items)


def _parse_row(path: Path, line: int, row: dict[str, str]) -> Instrument:
    symbol = (row.get("symbol") or "").strip().upper()
    if not SYMBOL_RE.fullmatch(symbol):
        raise SymbolFileError(f"{path}:{line}: bad symbol {row.get('symbol')!r}")
    asset_class = (row.get("asset_class") or "equity").strip().lower()
    if asset_class not in DEFAULT_TICK:
        raise SymbolFileError(
            f"{path}:{line}: unknown asset_class {asset_class!r}; use one of {', '.join(DEFAULT_TICK)}"
        )
    default_cal = {"crypto": ALWAYS_OPEN, "fx": WEEKDAYS}.get(asset_class, "XNYS")
    calendar = (row.get("calendar") or default_cal).strip()
    if calendar not in (ALWAYS_OPEN, WEEKDAYS):
        _calendar(calendar)
    try:
        tick = float(row.get("tick_size") or DEFAULT_TICK[asset_class])
    except ValueError as exc:
        raise SymbolFileError(f"{path}:{line}: tick_size {row.get('tick_size')!r} is not a number") from exc
    if not tick > 0:
        raise SymbolFileError(f"{path}:{line}: tick_size must be positive, got {tick}")
    currency = (row.get("currency") or "USD").strip().upper()
    return Instrument(symbol, asset_class, calendar, tick, currency)
