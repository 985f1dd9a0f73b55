"""deadline_probe (Airflow DAG, tests only): a run that outlives its 5 s DeadlineAlert, built with the
project's own deadline helper; its one task waits until the test releases it (a file)."""

import os
import time
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, task

from orchestration.deadlines import within


@task
def wait_for_release() -> None:
    release = Path(os.environ["AF_HOME"]) / "deadline_probe.release"
    deadline = time.monotonic() + 300
    while not release.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} was not created within 300 s")
        time.sleep(0.5)


with DAG(
    dag_id="deadline_probe",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # always: `airflow dags test` of another DAG (with AF_DEADLINES=false) re-serializes every DAG of
    # the folder, and this one must keep its deadline whatever ran before it
    deadline=within(timedelta(seconds=5), "the probe's 5 s deadline", always=True),
    tags=["test"],
):
    wait_for_release()
