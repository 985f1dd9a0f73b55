"""The dashboard's System health page reads a real Airflow: the private one of these tests. Its DAG
runs come back through the REST API with the project's login (the password file devstack writes),
and its components as the api-server reports them. (tests/dashboard cannot start an Airflow of its
own; its variant of this check runs only where `make airflow` runs.)"""

from __future__ import annotations

import pytest

from dashboard import health
from dashboard.settings import DashboardSettings

pytestmark = pytest.mark.slow


def test_the_dashboard_lists_a_run_and_the_components_of_a_running_airflow(airflow_instance):
    af = airflow_instance
    known = af.wait_for(
        lambda: af.metadata("select 1 from dag where dag_id = 'dbt_intraday' and not is_stale"), 120
    )
    assert known, "the dag-processor did not parse dbt_intraday"
    trigger = af.cli("dags", "trigger", "dbt_intraday")  # paused: the run stays queued, nothing runs
    assert trigger.returncode == 0, trigger.stderr[-2000:]
    run_id, state = af.latest_run("dbt_intraday")
    settings = DashboardSettings(
        airflow_url=af.settings.api_url, airflow_password_file=af.settings.passwords_file
    )
    runs = health.dag_runs(settings)
    mine = runs[runs["run_id"] == run_id]
    assert mine[["dag_id", "state"]].values.tolist() == [["dbt_intraday", state]]
    assert list(runs.columns) == ["dag_id", "run_id", "state", "start_date", "end_date", "duration_s"]
    components = health.airflow_components(settings)
    assert len(components) >= 3 and set(components["status"]) == {"healthy"}, components
