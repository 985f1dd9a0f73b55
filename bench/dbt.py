"""Benchmark of the dbt project at mart scale: 500 symbols x 10 years of daily bars (~1.26M rows).

Figures, in a database of its own (market_dbt_bench, recreated each run):
  full_build_s         `dbt build` from empty (seeds, every model, data and unit tests, quality hook)
  incremental_s        `dbt build` after one new trading day for every symbol
  noop_build_s         `dbt build` with nothing new: the fixed cost of dbt itself (baseline)
  copy_baseline_s      COPY of the same raw rows into raw.bars: the physical floor for one pass
  query_ms_p50/p95     one symbol's year from marts.fct_daily_prices, as the read-only role
  ratios               full_build / copy_baseline, incremental / noop_build
Quick mode: 50 symbols x 10 years.
"""

from __future__ import annotations

import logging
import statistics
import time
from datetime import date, timedelta

from psycopg2 import sql

from common.db import connect
from common.migrate import migrate
from common.settings import PostgresSettings, stack_settings
from dbt_project import sample_data
from dbt_project.runner import run_dbt

log = logging.getLogger(__name__)

DATABASE = "market_dbt_bench"
YEARS_OF_DAYS = 2520
TARGET_PATH = stack_settings().state_dir / "dbt-bench-target"


def _recreate_database(name: str) -> PostgresSettings:
    settings = PostgresSettings(database=name)
    conn = connect("admin", settings, database="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,))
            cur.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    migrate(settings)
    return settings


def _build(database: str) -> float:
    result = run_dbt(["build"], database=database, target_path=TARGET_PATH)
    if not result.ok:
        raise RuntimeError(f"dbt build failed in {database}:\n{result.stdout[-4000:]}")
    return result.seconds


def run(quick: bool = False) -> dict:
    symbols = 50 if quick else 500
    settings = _recreate_database(DATABASE)
    days = sample_data.trading_days(date.today() - timedelta(days=1), YEARS_OF_DAYS + 1)
    history, new_day = days[:-1], days[-1:]
    series = [sample_data.daily_series(f"B{i:04d}", history, seed=i) for i in range(symbols)]

    writer = connect("writer", settings)
    started = time.perf_counter()
    rows = sample_data.load_daily_bars(writer, series)
    copy_s = time.perf_counter() - started

    full_s = _build(DATABASE)

    extra = [sample_data.daily_series(f"B{i:04d}", new_day, seed=10_000 + i) for i in range(symbols)]
    sample_data.load_daily_bars(writer, extra)
    incremental_s = _build(DATABASE)
    noop_s = _build(DATABASE)
    writer.close()

    reader = connect("reader", settings)
    timings = []
    with reader.cursor() as cur:
        year_start = history[-252]
        for i in range(60):
            t0 = time.perf_counter()
            cur.execute(
                "select trade_date, open, high, low, close, volume, ma_50, ma_200, rsi_14, macd, macd_signal,"
                " macd_hist from marts.fct_daily_prices where symbol = %s and trade_date >= %s"
                " order by trade_date",
                (f"B{i % symbols:04d}", year_start),
            )
            fetched = cur.fetchall()
            timings.append((time.perf_counter() - t0) * 1000)
        reader.rollback()
    reader.close()
    timings = timings[10:]
    figures = {
        "symbols": symbols,
        "rows": rows,
        "copy_baseline_s": round(copy_s, 2),
        "full_build_s": round(full_s, 2),
        "incremental_s": round(incremental_s, 2),
        "noop_build_s": round(noop_s, 2),
        "query_rows": len(fetched),
        "query_ms_p50": round(statistics.median(timings), 2),
        "query_ms_p95": round(sorted(timings)[int(len(timings) * 0.95) - 1], 2),
        "full_build_over_copy": round(full_s / copy_s, 1),
        "incremental_over_noop": round(incremental_s / noop_s, 2),
    }
    log.info("bench_dbt %s", " ".join(f"{k}={v}" for k, v in figures.items()))
    return figures


if __name__ == "__main__":
    import json
    import sys

    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
