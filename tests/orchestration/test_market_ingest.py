"""market_ingest: exchange_calendars decides what a run does, and the DAG's branch runs only that task."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestration.ingest_tasks import DAILY, INTRADAY, NOTHING, plan, plan_run
from orchestration.settings import AirflowSettings

XNYS = AirflowSettings(exchange="XNYS")


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2026, 11, 24, 15, 0, tzinfo=UTC), (INTRADAY, "2026-11-24")),  # Tuesday 10:00 New York
        (datetime(2026, 11, 24, 21, 20, tzinfo=UTC), (DAILY, "2026-11-24")),  # 16:20 after the close
        (
            datetime(2026, 11, 27, 18, 30, tzinfo=UTC),
            (DAILY, "2026-11-27"),
        ),  # day after Thanksgiving: 13:00 close
        (datetime(2026, 11, 26, 15, 0, tzinfo=UTC), (NOTHING, None)),  # Thanksgiving: closed
        (datetime(2026, 11, 28, 15, 0, tzinfo=UTC), (NOTHING, None)),  # Saturday
        (datetime(2026, 11, 24, 13, 0, tzinfo=UTC), (NOTHING, None)),  # 8:00 New York, before the open
    ],
)
def test_the_exchange_calendar_decides_what_a_run_does(at, expected):
    what, day = plan(at, XNYS)
    assert (what, str(day) if day else None) == expected


def test_a_forced_daily_run_backfills_the_last_closed_session():
    # Saturday: the last session that closed is Friday's early close
    assert plan_run(datetime(2026, 11, 28, 15, 0, tzinfo=UTC), DAILY, XNYS) == (
        DAILY,
        datetime(2026, 11, 27).date(),
    )


@pytest.mark.slow
def test_the_branch_runs_only_the_task_the_run_asked_for(airflow_instance):
    proc, _, states = airflow_instance.dags_test("market_ingest", conf={"run": INTRADAY})
    assert states == {
        "what_to_run": "success",
        "intraday_fetch": "success",
        "daily_backfill": "skipped",
        "nothing": "skipped",
    }, proc.stdout[-3000:] + proc.stderr[-3000:]
