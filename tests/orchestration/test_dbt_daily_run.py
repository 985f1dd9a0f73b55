"""`airflow dags test dbt_daily` on a seeded database: the marts are built and the run scored; a planted
duplicate bar fails its model's task, the tasks after it go upstream_failed, the failure callback
counts an alert and the run's recorded score drops; once the duplicate is removed the next run is green."""

from __future__ import annotations

import pytest

from dbt_project import sample_data
from tests.orchestration.conftest import HISTORY_DAYS, SYMBOLS

pytestmark = pytest.mark.slow

STAGING_BARS = "dbt.stg_raw__bars_model_build"
AFTER_STAGING_BARS = {
    "dbt.int_daily_bars_unioned_model_build",
    "dbt.int_daily_indicators_computed_model_build",
    "dbt.fct_daily_prices_model_build",
    "dbt.fct_ma_crosses_model_build",
    "dbt.dim_symbols_model_build",
}


def _score(instance, run_id: str) -> tuple:
    rows = instance.pipeline(
        "select score, tests_run, tests_failed, passed_gate from quality.dag_run_scores"
        " where dag_id = 'dbt_daily' and run_id = %s",
        (run_id,),
    )
    assert len(rows) == 1, rows
    return rows[0]


def _tail(proc) -> str:
    """dbt's and Airflow's error lines of a `dags test` run (its whole output is long)."""
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [line for line in lines if "Error" in line or "ERROR" in line or "event=alert" in line]
    return "\n".join(errors[-40:])[-6000:]


def test_dbt_daily_builds_the_marts_fails_on_a_planted_duplicate_and_recovers(airflow_instance, seeded):
    af = airflow_instance
    # 1. a clean run builds every mart and passes the gate
    proc, run1, states = af.dags_test("dbt_daily")
    assert states and set(states.values()) == {"success"}, (states, _tail(proc))
    assert af.latest_run("dbt_daily") == (run1, "success")
    (rows,) = af.pipeline("select count(*) from marts.fct_daily_prices")[0]
    assert rows == len(SYMBOLS) * HISTORY_DAYS
    score1, tests1, failed1, passed1 = _score(af, run1)
    assert failed1 == 0 and passed1 and tests1 > 5
    # each dbt task was its own invocation, and all of them carried the run's key
    (invocations,) = af.pipeline(
        "select count(distinct invocation_id) from quality.test_results where orchestrator_run = %s",
        (f"dbt_daily/{run1}",),
    )[0]
    assert invocations >= 5

    # 2. the same trade date landed twice under two bar starts (an hour apart)
    start = sample_data.session_start_utc(seeded[-3])
    af.pipeline(
        "insert into raw.bars (symbol, interval, bar_start, open, high, low, close, volume, source,"
        " ingest_time) select symbol, interval, bar_start + interval '1 hour', open, high, low, close,"
        " volume, source, ingest_time from raw.bars where symbol = %s and bar_start = %s",
        (SYMBOLS[0], start),
    )
    alerts_before = af.alerts("failure", "dbt_daily")
    proc, run2, states = af.dags_test("dbt_daily")
    assert states[STAGING_BARS] == "failed", (states, _tail(proc))
    assert {t: states[t] for t in AFTER_STAGING_BARS} == dict.fromkeys(AFTER_STAGING_BARS, "upstream_failed")
    assert states["quality_gate"] == "failed"  # it runs after all, scores the run and fails it
    assert af.latest_run("dbt_daily") == (run2, "failed")
    assert af.wait_for(lambda: af.alerts("failure", "dbt_daily") > alerts_before, 30)
    score2, _, failed2, _ = _score(af, run2)
    assert failed2 >= 1 and score2 < score1
    failing = af.pipeline(
        "select test_name from quality.test_results where orchestrator_run = %s and status = 'fail'",
        (f"dbt_daily/{run2}",),
    )
    assert [name for (name,) in failing if name.startswith("unique_combination_stg_raw__bars")], failing

    # 3. the correction: the duplicate leaves the landing table and staging (staging upserts, it
    #    never deletes what its source lost), and the next run is green again
    af.pipeline(
        "delete from raw.bars where symbol = %s and bar_start = %s + interval '1 hour'", (SYMBOLS[0], start)
    )
    af.pipeline(
        "delete from staging.stg_raw__bars where symbol = %s and bar_start = %s + interval '1 hour'",
        (SYMBOLS[0], start),
    )
    proc, run3, states = af.dags_test("dbt_daily")
    assert set(states.values()) == {"success"}, (states, _tail(proc))
    score3, _, failed3, passed3 = _score(af, run3)
    assert failed3 == 0 and passed3 and score3 > score2
