"""Every database read of the dashboard: parameterised SQL as the read-only role, cached briefly.

Inputs are checked before any SQL runs (a symbol must be a symbol as the contract spells it, a date
range must be ordered and at most `max_range_days` long) and are only ever passed as parameters.
Connections come from one small pool per database, opened with `default_transaction_read_only`,
a statement timeout and UTC as the session time zone. Results are pandas DataFrames.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import date, timedelta

import pandas as pd
import psycopg2
import psycopg2.errors
import psycopg2.pool
import streamlit as st

from common.contract import SYMBOL_PATTERN
from common.db import DatabaseUnavailable
from dashboard.metrics import QUERY_SECONDS
from dashboard.settings import DashboardSettings, dashboard_settings

_SYMBOL = re.compile(SYMBOL_PATTERN)


class InvalidRequest(ValueError):
    """A parameter the dashboard refuses (not a symbol, a reversed or too long date range)."""


class NotBuilt(RuntimeError):
    """A table or view the page reads does not exist yet (dbt has not built the marts)."""


# --- the SQL, one statement per panel (bench/dashboard.py times each of them) -------------------

SYMBOLS_SQL = """
select symbol, first_trade_date, last_trade_date, trading_days, has_intraday
from marts.dim_symbols
order by symbol
"""

DAILY_PRICES_SQL = """
select trade_date, open, high, low, close, volume, ma_50, ma_200, rsi_14, macd, macd_signal, macd_hist
from marts.fct_daily_prices
where symbol = %(symbol)s and trade_date between %(start)s and %(end)s
order by trade_date
"""

MA_CROSSES_SQL = """
select trade_date, cross_type, ma_50, ma_200
from marts.fct_ma_crosses
where symbol = %(symbol)s and trade_date between %(start)s and %(end)s
order by trade_date
"""

# the live view: the symbol's bars of the (UTC) day of its newest bar, with their indicators
LIVE_BARS_SQL = """
select b.bar_start, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.is_final,
       i.sma_50, i.sma_200, i.rsi_14, i.macd, i.macd_signal, i.macd_hist
from rt.bars_1m as b
left join rt.indicators_1m as i on i.symbol = b.symbol and i.bar_start = b.bar_start
where b.symbol = %(symbol)s
  and b.bar_start >= (
      select date_trunc('day', max(newest.bar_start)) from rt.bars_1m as newest
      where newest.symbol = %(symbol)s and newest.bar_start > now() - interval '7 days'
  )
order by b.bar_start
"""

LIVE_SIGNALS_SQL = """
select signal_time, signal_type, value, threshold, detail
from rt.signals
where symbol = %(symbol)s and signal_time >= %(since)s
order by signal_time
"""

LATEST_TICK_SQL = """
select event_time, price
from raw.ticks
where symbol = %(symbol)s and event_time > now() - interval '1 day'
order by event_time desc
limit 1
"""

INTRADAY_BARS_SQL = """
select bar_start, open, high, low, close, volume, vwap, is_final,
       sma_50, sma_200, rsi_14, macd, macd_signal, macd_hist
from marts.fct_intraday_bars_1m
where symbol = %(symbol)s and bar_start >= %(start)s and bar_start < %(end)s
order by bar_start
"""

INTRADAY_SIGNALS_SQL = """
select signal_time, signal_type, signal_value as value, threshold, detail
from marts.fct_intraday_signals
where symbol = %(symbol)s and signal_time >= %(start)s and signal_time < %(end)s
order by signal_time
"""

COMPARE_SQL = """
select symbol, trade_date, close
from marts.fct_daily_prices
where symbol = any(%(symbols)s) and trade_date between %(start)s and %(end)s
order by symbol, trade_date
"""

QUALITY_SCORES_SQL = """
select run_started_at, command, score, completeness_score, uniqueness_score, validity_score,
       consistency_score, freshness_score, timeliness_score,
       tests_run, tests_passed, tests_warned, tests_failed, tests_skipped
from (
    select * from quality.run_scores order by run_started_at desc limit %(runs)s
) as latest
order by run_started_at
"""

FAILING_TESTS_SQL = """
with latest as (
    select invocation_id, run_started_at, command
    from quality.run_scores
    order by run_started_at desc
    limit %(runs)s
)
select latest.run_started_at, latest.command, results.status, results.test_name, results.dimension,
       results.tested_node, results.column_name, results.failures, results.message
from latest
join quality.test_results as results on results.invocation_id = latest.invocation_id
where results.status in ('fail', 'error', 'warn')
order by latest.run_started_at desc, results.status, results.test_name
"""

DEAD_LETTERS_SQL = """
select date_trunc('hour', failed_at) as hour, stage, reason, count(*) as letters
from raw.dead_letters
where failed_at >= now() - make_interval(days => %(days)s)
group by 1, 2, 3
order by 1, 2, 3
"""

DAILY_RANGE_SQL = """
select min(first_trade_date), max(last_trade_date) from marts.dim_symbols
"""


# --- inputs --------------------------------------------------------------------------------------


def check_symbol(value: object) -> str:
    """The symbol if it is one (the contract's spelling: upper case letters, digits, . - = ^)."""
    if not isinstance(value, str) or not _SYMBOL.fullmatch(value):
        shown = repr(value)[:60]
        raise InvalidRequest(f"{shown} is not a symbol: symbols are upper-case letters, digits and . - = ^")
    return value


def check_range(start: date, end: date, settings: DashboardSettings | None = None) -> tuple[date, date]:
    limit = (settings or dashboard_settings()).max_range_days
    if not isinstance(start, date) or not isinstance(end, date):
        raise InvalidRequest("the date range needs a start and an end date")
    if end < start:
        raise InvalidRequest(f"the range ends ({end}) before it starts ({start})")
    if (end - start).days > limit:
        raise InvalidRequest(
            f"the range {start} to {end} is {(end - start).days:,} days long; the longest allowed is "
            f"{limit:,} days"
        )
    return start, end


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{str(text)[:40]!r} is not a date (YYYY-MM-DD)") from None


# --- connections ---------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _pool(dsn: str, size: int) -> psycopg2.pool.ThreadedConnectionPool:
    return psycopg2.pool.ThreadedConnectionPool(1, size, dsn)


def _dsn(settings: DashboardSettings) -> str:
    pg = settings.postgres()
    options = (
        f"-c default_transaction_read_only=on -c statement_timeout={settings.statement_timeout_ms} "
        "-c timezone=UTC"
    )
    return f"{pg.dsn('reader')} options='{options}' application_name='marketpipe-dashboard'"


def run(sql: str, params: dict | None = None, settings: DashboardSettings | None = None) -> pd.DataFrame:
    """One statement as market_reader; a DataFrame of its rows. Not cached (see the read_* below)."""
    s = settings or dashboard_settings()
    pg = s.postgres()
    where = f"PostgreSQL at {pg.host}:{pg.port}/{pg.database}"
    pool: psycopg2.pool.ThreadedConnectionPool | None = None
    try:
        pool = _pool(_dsn(s), s.pool_size)
        conn = pool.getconn()
    except psycopg2.pool.PoolError:  # every pooled connection busy: one of its own, closed after
        pool = None
        conn = _connect_once(s, where)
    except psycopg2.OperationalError as exc:
        _pool.clear()
        raise DatabaseUnavailable(f"cannot reach {where} as market_reader: {_first_line(exc)}") from exc
    broken = False
    started, outcome = time.perf_counter(), "error"
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params or {})
            columns = [c.name for c in cur.description]
            rows = cur.fetchall()
        conn.rollback()
        outcome = "ok"
        return pd.DataFrame(rows, columns=columns)
    except psycopg2.errors.UndefinedTable as exc:
        conn.rollback()
        raise NotBuilt(f"{_first_line(exc)}: run `dbt build` (python -m dbt_project build) first") from exc
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        broken = True
        raise DatabaseUnavailable(f"lost the connection to {where}: {_first_line(exc)}") from exc
    except psycopg2.Error:
        conn.rollback()
        raise
    finally:
        QUERY_SECONDS.labels(outcome).observe(time.perf_counter() - started)
        if pool is None:
            conn.close()
        else:
            pool.putconn(conn, close=broken or conn.closed != 0)


def _connect_once(settings: DashboardSettings, where: str):
    try:
        return psycopg2.connect(_dsn(settings))
    except psycopg2.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach {where} as market_reader: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def timed(sql: str, params: dict | None = None) -> tuple[pd.DataFrame, float]:
    """A statement and its wall time in milliseconds (for the benchmark)."""
    started = time.perf_counter()
    frame = run(sql, params)
    return frame, (time.perf_counter() - started) * 1000


# --- cached reads (keyed by database, so tests and pages pointing elsewhere never share rows) ----

_TTL = dashboard_settings().cache_ttl_s
_LIVE_TTL = dashboard_settings().live_ttl_s


def _db() -> str:
    return dashboard_settings().postgres().database


def _params(key: tuple) -> dict:
    # a tuple (hashable, for the cache key) goes back to a list: psycopg2 sends a list as an array
    return {k: list(v) if isinstance(v, tuple) else v for k, v in key}


@st.cache_data(ttl=_TTL, show_spinner=False)
def _cached(database: str, sql: str, params: tuple) -> pd.DataFrame:
    return run(sql, _params(params))


@st.cache_data(ttl=_LIVE_TTL, show_spinner=False)
def _cached_live(database: str, sql: str, params: tuple) -> pd.DataFrame:
    return run(sql, _params(params))


def _read(sql: str, live: bool = False, **params) -> pd.DataFrame:
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))
    frame = (_cached_live if live else _cached)(_db(), sql, key)
    return frame.copy()


def read_symbols() -> pd.DataFrame:
    return _read(SYMBOLS_SQL)


def read_daily(symbol: str, start: date, end: date) -> pd.DataFrame:
    check_symbol(symbol)
    check_range(start, end)
    return _read(DAILY_PRICES_SQL, symbol=symbol, start=start, end=end)


def read_crosses(symbol: str, start: date, end: date) -> pd.DataFrame:
    check_symbol(symbol)
    check_range(start, end)
    return _read(MA_CROSSES_SQL, symbol=symbol, start=start, end=end)


def read_live_bars(symbol: str) -> pd.DataFrame:
    return _read(LIVE_BARS_SQL, live=True, symbol=check_symbol(symbol))


def read_live_signals(symbol: str, since) -> pd.DataFrame:
    return _read(LIVE_SIGNALS_SQL, live=True, symbol=check_symbol(symbol), since=since)


def read_latest_tick(symbol: str) -> pd.DataFrame:
    return _read(LATEST_TICK_SQL, live=True, symbol=check_symbol(symbol))


def read_intraday(symbol: str, day: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stream marts' 1-minute bars and signals of one UTC day."""
    check_symbol(symbol)
    params = {"symbol": symbol, "start": day, "end": day + timedelta(days=1)}
    return _read(INTRADAY_BARS_SQL, **params), _read(INTRADAY_SIGNALS_SQL, **params)


def read_compare(symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
    limit = dashboard_settings().max_compare_symbols
    if len(symbols) > limit:
        raise InvalidRequest(f"{len(symbols)} symbols chosen; the chart compares at most {limit}")
    checked = sorted({check_symbol(s) for s in symbols})
    check_range(start, end)
    return _read(COMPARE_SQL, symbols=checked, start=start, end=end)


def read_quality_scores() -> pd.DataFrame:
    return _read(QUALITY_SCORES_SQL, runs=dashboard_settings().quality_runs)


def read_failing_tests() -> pd.DataFrame:
    return _read(FAILING_TESTS_SQL, runs=dashboard_settings().failing_runs)


def read_dead_letters() -> pd.DataFrame:
    return _read(DEAD_LETTERS_SQL, days=dashboard_settings().dead_letter_days)
