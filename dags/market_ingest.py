"""market_ingest (Airflow DAG): intraday fetches while the exchange is open and the daily history
backfill after each close (exchange_calendars decides which), with retries and exponential backoff.
The daily task emits the raw_bars_daily asset once the bars landed, which schedules dbt_daily."""

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, MultipleCronTriggerTimetable, Param, get_current_context, task

from orchestration.assets import DAILY_BARS
from orchestration.dag_defaults import START, default_args
from orchestration.settings import airflow_settings

s = airflow_settings()


@task.branch
def what_to_run() -> str:
    from orchestration.ingest_tasks import plan_run

    ctx = get_current_context()
    return plan_run(ctx["dag_run"].run_after, ctx["params"]["run"])[0]


@task(outlets=[DAILY_BARS])
def daily_backfill() -> dict:
    from orchestration.ingest_tasks import daily_backfill as run
    from orchestration.ingest_tasks import plan_run

    ctx = get_current_context()
    return run(plan_run(ctx["dag_run"].run_after, ctx["params"]["run"])[1])


@task
def intraday_fetch() -> dict:
    from orchestration.ingest_tasks import intraday_fetch as run

    return run()


with DAG(
    dag_id="market_ingest",
    description="Intraday fetches in market hours, the daily backfill after the close (replay offline)",
    schedule=MultipleCronTriggerTimetable("*/15 9-15 * * 1-5", "20 16 * * 1-5", timezone="America/New_York"),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(s.task_retries),
    tags=["ingest", "marketpipe"],
    params={"run": Param("auto", enum=["auto", "intraday_fetch", "daily_backfill"])},
):
    what_to_run() >> [intraday_fetch(), daily_backfill(), EmptyOperator(task_id="nothing")]
