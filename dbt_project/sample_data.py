"""Generated market data for tests and benchmarks: daily bars on the NYSE calendar, 1-minute stream
bars and signals, loaded into raw.bars / rt.* the way the ingest and stream sinks land them.

Pure generators (numpy, seeded) are separate from the loaders (COPY through psycopg2).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

EXCHANGE_TZ = ZoneInfo("America/New_York")

BAR_COLUMNS = (
    "symbol",
    "interval",
    "bar_start",
    "open",
    "high",
    "low",
    "close",
    "adj_close",
    "volume",
    "source",
    "ingest_time",
)


@lru_cache(maxsize=4)
def _calendar():
    import warnings

    import exchange_calendars as xc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xc.get_calendar("XNYS", start="2000-01-01", end="2035-12-31")


def trading_days(end: date, count: int) -> list[date]:
    """The `count` NYSE sessions ending at the last session on or before `end`."""
    sessions = _calendar().sessions
    upto = sessions[sessions <= pd.Timestamp(end)]
    if len(upto) < count:
        raise ValueError(f"only {len(upto)} NYSE sessions up to {end}, asked for {count}")
    return [ts.date() for ts in upto[-count:]]


def session_start_utc(day: date) -> datetime:
    """A daily bar's start as Yahoo gives it: midnight exchange time, in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=EXCHANGE_TZ).astimezone(UTC)


@dataclass(frozen=True)
class DailySeries:
    symbol: str
    days: list[date]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


def daily_series(symbol: str, days: Sequence[date], seed: int, start_price: float = 100.0) -> DailySeries:
    """Geometric-Brownian closes with consistent opens, highs, lows and volumes."""
    rng = np.random.default_rng(seed)
    n = len(days)
    returns = rng.normal(0.0003, 0.018, n)
    close = start_price * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[start_price], close[:-1]]) * np.exp(rng.normal(0, 0.004, n))
    spread = np.abs(rng.normal(0, 0.01, n))
    high = np.maximum(open_, close) * (1 + spread)
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.01, n)))
    volume = np.round(rng.lognormal(13, 0.5, n))
    return DailySeries(symbol, list(days), open_, high, low, close, volume)


def with_gaps(series: DailySeries, every: int, seed: int) -> DailySeries:
    """The same series with about one day in `every` removed (halts, missing history)."""
    rng = np.random.default_rng(seed)
    keep = rng.random(len(series.days)) >= 1.0 / every
    keep[0] = True
    return DailySeries(
        series.symbol,
        [d for d, k in zip(series.days, keep, strict=True) if k],
        series.open[keep],
        series.high[keep],
        series.low[keep],
        series.close[keep],
        series.volume[keep],
    )


def _csv_value(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def render_csv(rows: Iterable[Sequence[object]]) -> tuple[io.StringIO, int]:
    """Rows as a CSV buffer for COPY, and how many there are."""
    buf = io.StringIO()
    count = 0
    for row in rows:
        buf.write(",".join(_csv_value(v) for v in row))
        buf.write("\n")
        count += 1
    buf.seek(0)
    return buf, count


def copy_csv(cur, table: str, columns: Sequence[str], buf: io.StringIO) -> None:
    cur.copy_expert(f"copy {table} ({', '.join(columns)}) from stdin with (format csv)", buf)


def _copy(cur, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    buf, count = render_csv(rows)
    copy_csv(cur, table, columns, buf)
    return count


def _ensure_partitions(cur, table: str, first: datetime, last: datetime) -> None:
    cur.execute("select raw.ensure_partitions(%s, %s, %s)", (table, first, last))


def daily_bar_rows(series: Sequence[DailySeries], source: str = "synthetic") -> Iterable[tuple]:
    """raw.bars rows (BAR_COLUMNS order) of daily series, interval '1d'."""
    ingest_time = datetime.now(UTC)
    for s in series:
        for i, d in enumerate(s.days):
            c = float(s.close[i])
            yield (
                s.symbol,
                "1d",
                session_start_utc(d),
                float(s.open[i]),
                float(s.high[i]),
                float(s.low[i]),
                c,
                c,
                float(s.volume[i]),
                source,
                ingest_time,
            )


def load_daily_bars(conn, series: Sequence[DailySeries], source: str = "synthetic") -> int:
    """COPY daily bars (interval '1d') into raw.bars, creating the partitions first; commits."""
    all_days = [d for s in series for d in s.days]
    if not all_days:
        return 0

    with conn.cursor() as cur:
        first, last = session_start_utc(min(all_days)), session_start_utc(max(all_days))
        _ensure_partitions(cur, "raw.bars", first, last)
        count = _copy(cur, "raw.bars", BAR_COLUMNS, daily_bar_rows(series, source))
    conn.commit()
    log.info("loaded_daily_bars rows=%d symbols=%d", count, len(series))
    return count


def intraday_bars(
    symbol: str, day: date, interval_minutes: int, count: int, seed: int, start_price: float = 50.0
) -> list[tuple]:
    """Intraday bars of one session from 09:30 exchange time, as raw.bars rows."""
    rng = np.random.default_rng(seed)
    open_at = datetime(day.year, day.month, day.day, 9, 30, tzinfo=EXCHANGE_TZ).astimezone(UTC)
    price = start_price
    out = []
    for i in range(count):
        o = price
        c = o * float(np.exp(rng.normal(0, 0.002)))
        h = max(o, c) * (1 + abs(float(rng.normal(0, 0.001))))
        lo = min(o, c) * (1 - abs(float(rng.normal(0, 0.001))))
        v = float(round(rng.lognormal(8, 0.4)))
        out.append(
            (
                symbol,
                f"{interval_minutes}m",
                open_at + timedelta(minutes=interval_minutes * i),
                o,
                h,
                lo,
                c,
                None,
                v,
                "synthetic",
                datetime.now(UTC),
            )
        )
        price = c
    return out


def load_raw_bar_rows(conn, rows: Sequence[tuple]) -> int:
    """COPY prepared raw.bars rows (BAR_COLUMNS order); commits."""
    if not rows:
        return 0
    with conn.cursor() as cur:
        starts = [r[2] for r in rows]
        _ensure_partitions(cur, "raw.bars", min(starts), max(starts))
        count = _copy(cur, "raw.bars", BAR_COLUMNS, rows)
    conn.commit()
    return count


def load_rt_minutes(
    conn, symbol: str, start: datetime, count: int, seed: int, price: float = 20.0, signal_every: int = 30
) -> int:
    """1-minute bars, indicators (close only) and a signal every `signal_every` bars into rt.*, with
    the ledger row the stream's sink writes with its bars (dbt's staging reads by it)."""
    rng = np.random.default_rng(seed)
    bars, indicators, signals = [], [], []
    for i in range(count):
        t = start + timedelta(minutes=i)
        o = price
        c = o * float(np.exp(rng.normal(0, 0.001)))
        h, lo = max(o, c) * 1.0005, min(o, c) * 0.9995
        v = float(round(rng.lognormal(6, 0.3)))
        bars.append((symbol, t, o, h, lo, c, v, (h + lo + c) / 3, 10, i < count - 1))
        indicators.append((symbol, t, c, i < count - 1))
        if i % signal_every == signal_every - 1:
            signals.append((symbol, t + timedelta(seconds=59), "volume_spike", v, 3.0))
        price = c
    with conn.cursor() as cur:
        for table in ("rt.bars_1m", "rt.indicators_1m", "rt.signals"):
            _ensure_partitions(cur, table, start, start + timedelta(minutes=count))
        _copy(
            cur,
            "rt.bars_1m",
            (
                "symbol",
                "bar_start",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "vwap",
                "trade_count",
                "is_final",
            ),
            bars,
        )
        _copy(cur, "rt.indicators_1m", ("symbol", "bar_start", "close", "is_final"), indicators)
        _copy(cur, "rt.signals", ("symbol", "signal_time", "signal_type", "value", "threshold"), signals)
        # the ledger row the stream's sink writes with its bars: dbt's staging reads rt.bars_1m and
        # rt.indicators_1m by its min_bar_start (stream_written_since_last_run in macros/watermark.sql)
        cur.execute(
            "insert into rt.stream_ledger (query_id, batch_id, query_name, input_rows, tick_rows, dead_rows,"
            " min_bar_start)"
            " select 'sample_data', coalesce(max(batch_id) + 1, 0), 'sample_data', 0, 0, 0, %s"
            " from rt.stream_ledger where query_id = 'sample_data'",
            (start,),
        )
    conn.commit()
    return count
