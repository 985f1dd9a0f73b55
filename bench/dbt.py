"""Benchmark of the dbt project at mart scale: 500 symbols x 10 years of daily bars (~1.26M rows).

Figures, in a database of its own (market_dbt_bench, recreated each run):
  parse_s              `dbt parse` of the project (once per change of the project's files; a build
                       after it reuses the parse), timed apart from the build
  full_build_s         `dbt build` from empty (seeds, every model, data and unit tests, quality hook),
                       wall clock of the dbt process; *_dbt_s is dbt's own elapsed time (no start-up),
                       *_models_s the sum of the models' execution times
  incremental_full_s   `dbt build` (unit tests included) after one new trading day for every symbol
  incremental_s        the daily run, as a user or cron starts it: `python -m dbt_project build
                       --skip-unit-tests --selector daily`, a new Python process that runs dbt in
                       process and exits without interpreter teardown; the median of DAILY_REPEATS
                       runs, each after one more new trading day (incremental_runs_s lists them).
                       The daily selector is the daily marts and all they read (selectors.yml); the
                       stream marts have a selector and a schedule of their own. Unit tests check
                       the code, not the data: they run in the full build, in pytest and on change
  noop_build_s         the same command with nothing new: the fixed cost of dbt itself (baseline)
  incremental_in_process_s  the daily run as Airflow + Cosmos run it (InvocationMode.DBT_RUNNER):
                       dbtRunner().invoke() in this interpreter, which has dbt imported (dbt_import_s,
                       timed apart) and has run one daily build before (a warm worker); median of
                       DAILY_REPEATS runs after a new day each. dbt still reads its partial-parse file
                       and writes its artifacts
  noop_in_process_s    the same with nothing new
  incremental_dbt_cli_s  the daily run after one more new day through the plain `dbt` executable
                       (`dbt build --exclude-resource-type unit_test --selector daily`), which also
                       pays Python's interpreter teardown
  copy_baseline_s      COPY of the same raw rows into raw.bars (CSV rendered beforehand): the
                       physical floor for one pass over the data
  query_ms_p50/p95     one symbol's year from marts.fct_daily_prices, as the read-only role
  ratios               full_build_models / copy_baseline, incremental / noop_build
  load_avg_1m          the machine's load average before and after (figures scale with it)
Quick mode: 50 symbols x 10 years.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from common.db import connect
from common.migrate import recreate_database
from common.settings import stack_settings
from dbt_project import sample_data
from dbt_project.runner import PROJECT_DIR, DbtResult, run_dbt, run_dbt_in_process

log = logging.getLogger(__name__)

DATABASE = "market_dbt_bench"
YEARS_OF_DAYS = 2520
TARGET_PATH = stack_settings().state_dir / "dbt-bench-target"


DAILY_BUILD = ["build", "--exclude-resource-type", "unit_test", "--selector", "daily"]
DAILY_CLI = ["build", "--skip-unit-tests", "--selector", "daily"]
DAILY_REPEATS = 3


def _run_cli(args: list[str], database: str, target_path: Path) -> DbtResult:
    """`python -m dbt_project <args>`: the project's CLI in a new process, timed from outside."""
    cmd = [
        sys.executable,
        "-m",
        "dbt_project",
        *args,
        "--database",
        database,
        "--target-path",
        str(target_path),
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=PROJECT_DIR.parent, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    return DbtResult(tuple(args), proc.returncode, proc.stdout, proc.stderr, seconds)


def _build(database: str, name: str, args: list[str] | None = None, how: str = "dbt") -> dict[str, float]:
    """One dbt build; `how`: "dbt" (the dbt executable), "cli" (python -m dbt_project), "in_process"."""
    if how == "cli":
        result = _run_cli(args or ["build"], database, TARGET_PATH)
    else:
        run = run_dbt_in_process if how == "in_process" else run_dbt
        result = run(args or ["build"], database=database, target_path=TARGET_PATH)
    if not result.ok:
        raise RuntimeError(f"dbt build failed in {database}:\n{result.stdout[-4000:]}{result.stderr[-2000:]}")
    text = (TARGET_PATH / "run_results.json").read_text()
    # kept per step, for the per-node timings
    (TARGET_PATH / f"run_results_{name}.json").write_text(text)
    run_results = json.loads(text)
    models_s = sum(r["execution_time"] for r in run_results["results"] if r["unique_id"].startswith("model."))
    return {"wall": result.seconds, "dbt": run_results["elapsed_time"], "models": models_s}


def _step_figures(name: str, runs: list[dict[str, float]]) -> dict[str, object]:
    """`<name>_s`, `<name>_dbt_s`, `<name>_models_s` of one step, the medians when it ran several
    times (then `<name>_runs_s` lists each run's wall time)."""
    figures: dict[str, object] = {
        f"{name}{suffix}": round(statistics.median(run[key] for run in runs), 2)
        for key, suffix in (("wall", "_s"), ("dbt", "_dbt_s"), ("models", "_models_s"))
    }
    if len(runs) > 1:
        figures[f"{name}_runs_s"] = [round(run["wall"], 2) for run in runs]
    return figures


def run(quick: bool = False) -> dict:
    symbols = 50 if quick else 500
    settings = recreate_database(DATABASE)
    added_days = 2 + 2 * DAILY_REPEATS
    days = sample_data.trading_days(date.today() - timedelta(days=1), YEARS_OF_DAYS + added_days)
    history, new_days = days[:-added_days], days[-added_days:]
    series = [sample_data.daily_series(f"B{i:04d}", history, seed=i) for i in range(symbols)]

    load_before = os.getloadavg()[0]
    writer = connect("writer", settings)
    buf, rows = sample_data.render_csv(sample_data.daily_bar_rows(series))
    with writer.cursor() as cur:
        cur.execute(
            "select raw.ensure_partitions('raw.bars', %s, %s)",
            (sample_data.session_start_utc(history[0]), sample_data.session_start_utc(history[-1])),
        )
        writer.commit()
        started = time.perf_counter()
        sample_data.copy_csv(cur, "raw.bars", sample_data.BAR_COLUMNS, buf)
        writer.commit()
        copy_s = time.perf_counter() - started
    del buf

    parse = run_dbt(["parse"], database=DATABASE, target_path=TARGET_PATH)
    if not parse.ok:
        raise RuntimeError(f"dbt parse failed:\n{parse.stdout[-4000:]}")
    full = _build(DATABASE, "full_build")
    new_days = iter(new_days)

    def add_day() -> None:
        day = next(new_days)
        seed = 10_000 * (day.toordinal() % 1000)
        extra = [sample_data.daily_series(f"B{i:04d}", [day], seed=seed + i) for i in range(symbols)]
        sample_data.load_daily_bars(writer, extra)

    def daily_runs(name: str, args: list[str], how: str) -> list[dict[str, float]]:
        """The daily run after one new day each time, DAILY_REPEATS times (single runs vary by
        +-15 % here; the median is the figure)."""
        runs = []
        for n in range(DAILY_REPEATS):
            add_day()
            runs.append(_build(DATABASE, f"{name}_{n}", args, how=how))
        return runs

    add_day()
    incremental_full = _build(DATABASE, "incremental_full")
    cli_runs = daily_runs("incremental", DAILY_CLI, how="cli")
    noop = _build(DATABASE, "noop_build", DAILY_CLI, how="cli")

    # the daily run as the scheduler runs it: dbtRunner in an interpreter that has dbt imported and
    # has run it once (Cosmos' InvocationMode.DBT_RUNNER); the import is timed apart
    started = time.perf_counter()
    import dbt.cli.main  # noqa: F401

    import_s = time.perf_counter() - started
    _build(DATABASE, "warm_up_in_process", DAILY_BUILD, how="in_process")
    in_process_runs = daily_runs("incremental_in_process", DAILY_BUILD, how="in_process")
    noop_in_process = _build(DATABASE, "noop_in_process", DAILY_BUILD, how="in_process")

    add_day()
    dbt_cli = _build(DATABASE, "incremental_dbt_cli", DAILY_BUILD)
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
    daily_wall = statistics.median(run["wall"] for run in cli_runs)
    figures = {
        "symbols": symbols,
        "rows": rows,
        "copy_baseline_s": round(copy_s, 2),
        "parse_s": round(parse.seconds, 2),
        **_step_figures("full_build", [full]),
        **_step_figures("incremental_full", [incremental_full]),
        **_step_figures("incremental", cli_runs),
        **_step_figures("noop_build", [noop]),
        "dbt_import_s": round(import_s, 2),
        **_step_figures("incremental_in_process", in_process_runs),
        **_step_figures("noop_in_process", [noop_in_process]),
        **_step_figures("incremental_dbt_cli", [dbt_cli]),
        "query_rows": len(fetched),
        "query_ms_p50": round(statistics.median(timings), 2),
        "query_ms_p95": round(sorted(timings)[int(len(timings) * 0.95) - 1], 2),
        "full_build_over_copy": round(full["wall"] / copy_s, 1),
        "full_build_models_over_copy": round(full["models"] / copy_s, 1),
        "incremental_over_copy": round(daily_wall / copy_s, 2),
        "incremental_over_noop": round(daily_wall / noop["wall"], 2),
        "load_avg_1m_before": round(load_before, 1),
        "load_avg_1m_after": round(os.getloadavg()[0], 1),
    }
    log.info("bench_dbt %s", " ".join(f"{k}={v}" for k, v in figures.items()))
    return figures


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
