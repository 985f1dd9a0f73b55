"""The project's SQL lints clean, its docs generate, its sources are fresh, staging prunes partitions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dbt_project.runner import PROJECT_DIR
from dbt_project.settings import TransformSettings
from tests.dbt.conftest import DAILY_SYMBOLS


def test_sqlfluff_lints_every_model_clean():
    sqlfluff = TransformSettings().dbt_executable.parent / "sqlfluff"
    proc = subprocess.run(
        [str(sqlfluff), "lint", "models", "--processes", "1", "--format", "json"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    files = json.loads(proc.stdout)
    assert len(files) >= 13
    violations = {f["filepath"]: [v["code"] for v in f["violations"]] for f in files if f["violations"]}
    assert violations == {}
    assert proc.returncode == 0


@pytest.mark.slow
def test_staging_query_for_one_symbol_and_month_scans_one_partition(dbt_db):
    month = dbt_db.days[-30].replace(day=1)
    plan = "\n".join(
        row[0]
        for row in dbt_db.query(
            "explain select * from staging.stg_raw__bars where symbol = %s"
            " and bar_start >= %s::timestamptz and bar_start < %s::timestamptz + interval '1 month'",
            (DAILY_SYMBOLS[0], month.isoformat(), month.isoformat()),
        )
    )
    partitions = dbt_db.query(
        "select count(*) from pg_inherits where inhparent = 'staging.stg_raw__bars'::regclass"
    )[0][0]
    assert partitions > 10
    assert f"stg_raw__bars_p{month:%Y%m}" in plan
    assert plan.count("stg_raw__bars_p") == 1, plan


@pytest.mark.slow
def test_docs_generate_writes_a_catalog_with_the_marts(dbt_db):
    result = dbt_db.dbt("docs", "generate")
    assert result.ok, result.stdout[-3000:]
    catalog = json.loads((dbt_db.target / "catalog.json").read_text())
    nodes = {n["metadata"]["name"]: n for n in catalog["nodes"].values()}
    assert {"fct_daily_prices", "fct_ma_crosses", "dim_symbols"} <= set(nodes)
    assert "macd_hist" in {c.lower() for c in nodes["fct_daily_prices"]["columns"]}
    assert (dbt_db.target / "index.html").exists()


@pytest.mark.slow
def test_source_freshness_passes_on_just_landed_data(dbt_db):
    result = dbt_db.dbt("source", "freshness", "--select", "source:raw.bars", "source:rt.bars_1m")
    assert result.ok, result.stdout[-3000:]
    sources = json.loads((dbt_db.target / "sources.json").read_text())["results"]
    assert {r["unique_id"]: r["status"] for r in sources} == {
        "source.marketpipe.raw.bars": "pass",
        "source.marketpipe.rt.bars_1m": "pass",
    }


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dbt_project", *args],
        cwd=PROJECT_DIR.parent,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_cli_runs_dbt_in_process_and_exits_with_its_code_and_its_whole_output(dbt_db, tmp_path):
    # the CLI leaves through os._exit: what dbt printed and its run results must be written first
    built = _cli(
        "build",
        "--database",
        dbt_db.name,
        "--select",
        "stg_raw__dead_letters",
        "--target-path",
        str(tmp_path),
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "Completed successfully" in built.stdout
    results = json.loads((tmp_path / "run_results.json").read_text())["results"]
    assert "model.marketpipe.stg_raw__dead_letters" in {r["unique_id"] for r in results}

    failed = _cli("dbt", "--database", dbt_db.name, "--", "run-operation", "no_such_macro")
    assert failed.returncode != 0
    assert "no_such_macro" in failed.stdout + failed.stderr
    assert "dbt exited with" in failed.stderr


def _models_of(dbt_db, *selection: str) -> set[str]:
    listed = dbt_db.dbt("ls", *selection, "--resource-type", "model", "--output", "name", "--quiet")
    assert listed.ok, listed.stdout[-3000:]
    return {line.strip() for line in listed.stdout.splitlines() if line.strip()}


def test_the_daily_and_intraday_selectors_split_the_project_without_leaving_a_model_out(dbt_db):
    daily = _models_of(dbt_db, "--selector", "daily")
    intraday = _models_of(dbt_db, "--selector", "intraday")
    every_model = _models_of(dbt_db)

    assert {"fct_daily_prices", "fct_ma_crosses", "dim_symbols", "int_daily_indicators_computed"} <= daily
    assert {"fct_intraday_bars_1m", "fct_intraday_signals"} <= intraday
    assert not {"fct_intraday_bars_1m", "fct_intraday_signals"} & daily
    assert daily | intraday == every_model


def test_recency_passes_on_just_landed_bars_and_warns_once_they_are_older_than_four_days(dbt_db):
    recency = "recency_within_stg_raw__bars_landed_at__4_days"

    def run_recency() -> dict:
        dbt_db.dbt("test", "--select", recency)
        (only,) = [r for r in dbt_db.run_results() if recency in r["unique_id"]]
        return only

    assert run_recency()["status"] == "pass"
    conn = dbt_db.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("update staging.stg_raw__bars set landed_at = landed_at - interval '10 days'")
        stale = run_recency()
    finally:
        with conn, conn.cursor() as cur:
            cur.execute("update staging.stg_raw__bars set landed_at = landed_at + interval '10 days'")
        conn.close()
    assert stale["status"] == "warn"
    assert stale["failures"] == 1
