"""dbt_daily (Airflow DAG): the daily marts, one Cosmos task per model of the `daily` selector, then the
quality gate. Runs when market_ingest reports the daily bars landed, and at a fixed time as a fallback;
its run must finish within AF_DAILY_MARTS_DEADLINE_MIN of being queued (docs/AIRFLOW.md)."""

from datetime import timedelta

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

from orchestration.assets import DAILY_BARS
from orchestration.dbt_dags import dbt_dag
from orchestration.deadlines import within
from orchestration.settings import airflow_settings

s = airflow_settings()

dag = dbt_dag(
    "dbt_daily",
    selector="daily",
    description="Daily marts (staging, daily union, indicators, marts) and the run's data-quality gate",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(s.daily_fallback_cron, timezone="UTC"), assets=DAILY_BARS
    ),
    deadline=within(timedelta(minutes=s.daily_marts_deadline_min), "the daily marts' deadline"),
)
