"""stream_supervisor (Airflow DAG): every minute, check the streaming job's process, heartbeat and
Kafka lag, and restart it when it is dead, hung or stuck (orchestration/stream_supervisor.py)."""

from datetime import timedelta

from airflow.sdk import DAG, get_current_context, task

from orchestration.dag_defaults import START, default_args


@task(execution_timeout=timedelta(minutes=2))
def check_and_restart() -> dict:
    from orchestration.stream_supervisor import supervise

    ctx = get_current_context()
    ti = ctx["ti"]
    report = supervise(context_ids=(ti.dag_id, ti.task_id, ti.run_id))
    if report.action == "capped":
        raise RuntimeError(f"stream restarts capped: {report.reason}")
    return report.as_dict()


with DAG(
    dag_id="stream_supervisor",
    description="Restart the Spark streaming job when it is dead, hung or stuck (capped per hour)",
    schedule=timedelta(minutes=1),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(0),
    tags=["stream", "marketpipe"],
    dagrun_timeout=timedelta(minutes=3),
):
    check_and_restart()
