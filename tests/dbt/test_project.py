"""The project's SQL lints clean, its docs generate, its sources are fresh, staging prunes partitions."""

from __future__ import annotations

import json
import subprocess

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
