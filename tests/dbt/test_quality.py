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
    data_tests = [r for r in quality_db.run_results() if r["unique_id"].startswith("test.")]
    assert len(data_tests) == 38
    rows = quality_db.query(
        "select test_name, status from quality.test_results where invocation_id = %s"
        " and test_kind = 'data' and status <> 'pass'",
        (run[0],),
    )
    # clean daily bars and no stream data: the two recency checks of the stream's 1-minute bars warn
    assert sorted(rows) == [
        ("recency_within_fct_intraday_bars_1m_bar_start__15_minutes", "warn"),  # timeliness (tagged)
        ("source_recency_within_rt_bars_1m_updated_at__15_minutes", "warn"),  # freshness
    ]
    # the project's 38 data tests by dimension (docs/DBT.md's mapping): completeness 12, uniqueness 7,
    # validity 9, consistency 5 all pass -> 100 each; freshness: recency_within on stg_raw__bars
    # passes, the source recency on rt.bars_1m warns -> (100 + 50) / 2 = 75; timeliness: the two
    # landing_latency_within tests pass, the stream mart's recency warns -> (100 + 100 + 50) / 3
    # = 83.333...; score = (4 * 100 + 75 + 83.333...) / 6 = 558.333... / 6 = 93.0555...
    assert run[1:6] == (pytest.approx(93.0555555556), 38, 36, 2, 0)  # score, run, passed, warned, failed
    assert list(run[6:]) == [
        pytest.approx(100.0),
        pytest.approx(100.0),
        pytest.approx(100.0),
        pytest.approx(100.0),
        pytest.approx(75.0),
        pytest.approx(83.3333333333),
    ]


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


def test_planted_failures_and_a_warning_give_the_score_the_documented_formula_gives(quality_db):
    """Known bad rows on known data, then the six data tests of stg_raw__bars alone; the expected
    score is worked out by hand from the formula in docs/DBT.md, not from the stored results."""
    day = quality_db.days[-5]
    start = sample_data.session_start_utc(day)
    writer = quality_db.connect("writer")
    try:
        with writer.cursor() as cur:
            # what the first build wrote is older than the tests' recent slice (3 days): the duplicate
            # must be caught against an old row, not only among new ones; and recency_within, which
            # looks at rows written in the last 4 days, sees only the planted rows below
            for model in AGED_MODELS:
                cur.execute(f"update {model} set dbt_updated_at = dbt_updated_at - interval '10 days'")
            # every planted row landed 5 days ago: still after staging's (aged) watermark, so the next
            # build reads it, but older than recency_within's 4 days
            # crossed prices: high below low
            cur.execute(
                "update raw.bars set high = low * 0.9, landed_at = now() - interval '5 days'"
                " where symbol = 'Q' and bar_start = %s",
                (start,),
            )
            # the same trade date landed twice under two bar starts (an hour apart)
            cur.execute(
                "insert into raw.bars (symbol, interval, bar_start, open, high, low, close, volume,"
                " source, ingest_time, landed_at) select symbol, interval, bar_start + interval '1 hour',"
                " open, high, low, close, volume, source, ingest_time, now() - interval '5 days'"
                " from raw.bars where symbol = 'R' and bar_start = %s",
                (start,),
            )
            # a negative volume
            cur.execute(
                "update raw.bars set volume = -5, landed_at = now() - interval '5 days'"
                " where symbol = 'S' and bar_start = %s",
                (start,),
            )
        writer.commit()
    finally:
        writer.close()

    result = quality_db.dbt("build", "--select", "stg_raw__bars")
    assert result.returncode == 1  # error-severity tests failed

    run = latest_run(quality_db)
    invocation = run[0]
    statuses = {
        prefix: status_of(quality_db, invocation, prefix)
        for prefix in (
            "accepted_values_stg_raw__bars",
            "accepted_range_stg_raw__bars",
            "not_null_columns_stg_raw__bars",
            "ohlc_consistent_stg_raw__bars",
            "recency_within_stg_raw__bars",
            "unique_combination_stg_raw__bars",
        )
    }
    assert statuses == {
        "accepted_values_stg_raw__bars": "pass",  # validity
        "accepted_range_stg_raw__bars": "fail",  # validity: S's volume -5
        "not_null_columns_stg_raw__bars": "pass",  # completeness
        "ohlc_consistent_stg_raw__bars": "fail",  # consistency: Q's high below its low
        "recency_within_stg_raw__bars": "warn",  # freshness: the newest landed 5 days ago
        "unique_combination_stg_raw__bars": "fail",  # uniqueness: R twice on one trade date
    }
    # points: pass 100, warn 50, fail 0; a dimension is the mean of its tests' points:
    #   completeness 100 (1 pass), uniqueness 0 (1 fail), validity (100 + 0) / 2 = 50,
    #   consistency 0 (1 fail), freshness 50 (1 warn), timeliness: no test -> null, left out
    # score = (100 + 0 + 50 + 0 + 50) / 5 = 40 (weights 1 each)
    assert run[1:6] == (pytest.approx(40.0), 6, 2, 1, 3)  # score, run, passed, warned, failed
    assert list(run[6:]) == [
        pytest.approx(100.0),  # completeness
        pytest.approx(0.0),  # uniqueness
        pytest.approx(50.0),  # validity
        pytest.approx(0.0),  # consistency
        pytest.approx(50.0),  # freshness
        None,  # timeliness
    ]


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
