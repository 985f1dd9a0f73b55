"""dbt_intraday (Airflow DAG): the stream marts of the `intraday` selector every few minutes during the
exchange's hours, then the quality gate; each run must finish within its period."""

from datetime import timedelta

from airflow.sdk import CronTriggerTimetable

from orchestration.dbt_dags import dbt_dag
from orchestration.deadlines import within
from orchestration.settings import airflow_settings

s = airflow_settings()

dag = dbt_dag(
    "dbt_intraday",
    selector="intraday",
    description="Stream marts for the dashboard (1-minute bars, signals) and the run's data-quality gate",
    schedule=CronTriggerTimetable(f"*/{s.intraday_every_min} 9-16 * * 1-5", timezone="America/New_York"),
    deadline=within(timedelta(minutes=s.intraday_every_min), "a dbt_intraday run within its period"),
)
