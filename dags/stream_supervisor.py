"""stream_supervisor (Airflow DAG): every minute, check each shard of the streaming job (its process,
heartbeat and Kafka lag) and restart the shard that is dead, hung or stuck, only that one
(orchestration/stream_supervisor.py)."""

from datetime import timedelta

from airflow.sdk import DAG, get_current_context, task

from orchestration.dag_defaults import START, default_args


@task(execution_timeout=timedelta(minutes=2))
def check_and_restart() -> list[dict]:
    from orchestration.stream_supervisor import supervise

    ctx = get_current_context()
    ti = ctx["ti"]
    reports = supervise(context_ids=(ti.dag_id, ti.task_id, ti.run_id))
    capped = [f"{r.query_name}: {r.reason}" for r in reports if r.action == "capped"]
    if capped:  # after every shard was checked: the others were restarted if they needed it
        raise RuntimeError(f"stream restarts capped: {'; '.join(capped)}")
    return [r.as_dict() for r in reports]


with DAG(
    dag_id="stream_supervisor",
    description="Restart each shard of the Spark streaming job that is dead, hung or stuck (capped per hour)",
    schedule=timedelta(minutes=1),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(0),
    tags=["stream", "marketpipe"],
    dagrun_timeout=timedelta(minutes=3),
):
    check_and_restart()
