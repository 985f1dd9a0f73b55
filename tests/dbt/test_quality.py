"""Planted bad rows make the matching dbt tests fail and lower the quality score as the formula says."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from common.migrate import recreate_database
from dbt_project import sample_data
from tests.dbt.conftest import DbtDatabase

pytestmark = pytest.mark.slow

QUALITY_DATABASE = "market_dbt_test_quality"
DIMENSIONS = ("completeness", "uniqueness", "validity", "consistency", "freshness", "timeliness")
POINTS = {"pass": 100.0, "warn": 50.0, "fail": 0.0, "error": 0.0}


def expected_scores(results: list[tuple[str, str, str]]) -> tuple[float | None, dict[str, float | None]]:
    """The documented formula, from (test_kind, dimension, status) rows: equal weights."""
    by_dimension: dict[str, list[float]] = {}
    for kind, dimension, status in results:
        if kind == "data" and status in POINTS:
            by_dimension.setdefault(dimension, []).append(POINTS[status])
    dims = {d: (sum(v) / len(v) if (v := by_dimension.get(d)) else None) for d in DIMENSIONS}
    present = [s for s in dims.values() if s is not None]
    return (sum(present) / len(present) if present else None), dims


@pytest.fixture(scope="module")
def quality_db(stack, tmp_path_factory) -> DbtDatabase:
    settings = recreate_database(QUALITY_DATABASE)
    days = sample_data.trading_days(date.today() - timedelta(days=1), 60)
    db = DbtDatabase(QUALITY_DATABASE, settings, tmp_path_factory.mktemp("dbt-quality"), days)
    writer = db.connect("writer")
    try:
        sample_data.load_daily_bars(
            writer, [sample_data.daily_series(s, days, seed=i) for i, s in enumerate("QRS")]
        )
    finally:
        writer.close()
    return db


def latest_run(db: DbtDatabase) -> tuple:
    return db.query(
        "select invocation_id, score, tests_run, tests_passed, tests_warned, tests_failed, "
        + ", ".join(f"{d}_score" for d in DIMENSIONS)
        + " from quality.run_scores order by recorded_at desc limit 1"
    )[0]


def status_of(db: DbtDatabase, invocation_id: str, test_prefix: str) -> str:
    rows = db.query(
        "select status from quality.test_results where invocation_id = %s and test_name like %s",
        (invocation_id, test_prefix + "%"),
    )
    assert len(rows) == 1, (test_prefix, rows)
    return rows[0][0]


def test_clean_data_scores_by_the_formula_and_records_every_test(quality_db):
    result = quality_db.dbt("build")
    assert result.ok, result.stdout[-3000:]
    run = latest_run(quality_db)
    rows = quality_db.query(
        "select test_kind, dimension, status from quality.test_results where invocation_id = %s", (run[0],)
    )
    data_tests = [r for r in quality_db.run_results() if r["unique_id"].startswith("test.")]
    assert len([r for r in rows if r[0] == "data"]) == len(data_tests)
    score, dims = expected_scores(rows)
    assert run[1] == pytest.approx(score)
    assert list(run[6:]) == [pytest.approx(dims[d]) if dims[d] is not None else None for d in DIMENSIONS]
    assert run[5] == 0
    quality_db.clean_score = run[1]


def test_a_new_day_after_a_gap_warns_through_the_incremental_completeness_check(quality_db):
    # the clean build passed, so no_missing_trading_days checks only the new rows' neighbours
    after = [
        d
        for d in sample_data.trading_days(quality_db.days[-1] + timedelta(days=14), 10)
        if d > quality_db.days[-1]
    ]
    writer = quality_db.connect("writer")
    try:
        sample_data.load_daily_bars(writer, [sample_data.daily_series("S", [after[1]], seed=99)])
    finally:
        writer.close()
    result = quality_db.dbt("build", "--exclude-resource-type", "unit_test")
    assert result.ok, result.stdout[-3000:]
    (completeness,) = [
        r
        for r in quality_db.run_results()
        if r["unique_id"].startswith("test.marketpipe.no_missing_trading_days")
    ]
    assert "neighbours" in completeness["compiled_code"]  # the incremental form ran
    assert (completeness["status"], completeness["failures"]) == ("warn", 1)
    (missing,) = quality_db.query(
        "select count(*) from marts.fct_daily_prices where symbol = 'S' and trade_date = %s", (after[0],)
    )
    assert missing == (0,)


AGED_MODELS = (
    "staging.stg_raw__bars",
    "intermediate.int_daily_bars_unioned",
    "intermediate.int_daily_indicators_computed",  # fct_daily_prices is a view of it
    "marts.fct_ma_crosses",
)


def test_crossed_prices_and_a_duplicate_day_fail_their_tests_and_lower_the_score(quality_db):
    day = quality_db.days[-5]
    start = sample_data.session_start_utc(day)
    writer = quality_db.connect("writer")
    try:
        with writer.cursor() as cur:
            # what the first build wrote is older than the tests' recent slice (3 days): the duplicate
            # must be caught against an old row, not only among new ones
            for model in AGED_MODELS:
                cur.execute(f"update {model} set dbt_updated_at = dbt_updated_at - interval '10 days'")
            # crossed prices: high below low
            cur.execute(
                "update raw.bars set high = low * 0.9, landed_at = now()"
                " where symbol = 'Q' and bar_start = %s",
                (start,),
            )
            # the same trade date landed twice under two bar starts (an hour apart)
            cur.execute(
                "insert into raw.bars (symbol, interval, bar_start, open, high, low, close, volume,"
                " source, ingest_time) select symbol, interval, bar_start + interval '1 hour', open, high,"
                " low, close, volume, source, ingest_time from raw.bars"
                " where symbol = 'R' and bar_start = %s",
                (start,),
            )
        writer.commit()
    finally:
        writer.close()

    result = quality_db.dbt("build")
    assert result.returncode == 1  # error-severity tests failed: downstream marts are skipped

    run = latest_run(quality_db)
    invocation = run[0]
    assert status_of(quality_db, invocation, "ohlc_consistent_stg_raw__bars") == "fail"
    assert status_of(quality_db, invocation, "unique_combination_stg_raw__bars") == "fail"
    rows = quality_db.query(
        "select test_kind, dimension, status from quality.test_results where invocation_id = %s",
        (invocation,),
    )
    score, dims = expected_scores(rows)
    assert run[1] == pytest.approx(score)
    assert run[5] >= 2
    assert dims["consistency"] < 100 and dims["uniqueness"] < 100
    assert run[1] < quality_db.clean_score


def test_a_found_duplicate_fails_again_on_the_next_build_with_nothing_new(quality_db):
    # the recent slice starts at the test's last pass, not at the previous run: the duplicate planted
    # above is not new any more, and is still reported
    result = quality_db.dbt("build")
    assert result.returncode == 1
    invocation = latest_run(quality_db)[0]
    assert status_of(quality_db, invocation, "unique_combination_stg_raw__bars") == "fail"
    assert status_of(quality_db, invocation, "ohlc_consistent_stg_raw__bars") == "fail"


def test_quality_rows_are_one_per_invocation(quality_db):
    ((runs, invocations),) = quality_db.query(
        "select count(*), count(distinct invocation_id) from quality.run_scores"
    )
    assert runs == invocations == 4
    dupes = quality_db.query(
        "select count(*) from (select invocation_id, unique_id from quality.test_results"
        " group by 1, 2 having count(*) > 1) d"
    )
    assert dupes == [(0,)]
