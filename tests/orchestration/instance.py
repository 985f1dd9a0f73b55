"""A private Airflow for the tests: its own AIRFLOW_HOME under a tmp folder, its own metadata database
and role, free ports, its own statsd_exporter, and a pipeline database of its own that the dbt tasks
build in. Started once per session by devstack's own code (devstack/airflow.py), so the tests run
what `make airflow` runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from psycopg2 import sql

from common.db import connect, fetch_all
from common.settings import PROJECT_ROOT, PostgresSettings
from devstack.airflow import Airflow, _bin
from devstack.process import wait_until
from devstack.statsd import StatsdExporter
from orchestration.settings import AirflowSettings

TEST_DAGS = Path(__file__).parent / "dags"


def drop_database(pg: PostgresSettings, name: str) -> None:
    conn = connect("admin", pg, database="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
    finally:
        conn.close()


def dags_folder(root: Path) -> Path:
    """The project's DAG files and the tests' own (deadline probe), side by side."""
    folder = root / "dags"
    folder.mkdir(parents=True, exist_ok=True)
    for f in [*(PROJECT_ROOT / "dags").glob("*.py"), *TEST_DAGS.glob("*.py")]:
        link = folder / f.name
        if not link.exists():
            link.symlink_to(f)
    return folder


@dataclass
class AirflowInstance:
    settings: AirflowSettings
    pg: PostgresSettings
    airflow: Airflow
    exporter: StatsdExporter

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.airflow.environment(), **extra}

    def cli(self, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [_bin("airflow"), *args],
            env=self.env(**env),
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def metadata(self, statement: str, params: tuple = ()) -> list[tuple]:
        """A query on Airflow's metadata database (as the admin)."""
        return fetch_all(statement, params, settings=self.pg, database=self.settings.database)

    def pipeline(self, statement: str, params: tuple = (), role: str = "admin") -> list[tuple]:
        """A query on the pipeline database the dbt tasks build in."""
        return fetch_all(statement, params, role, self.pg)

    def metrics(self) -> str:
        url = f"http://{self.exporter.address}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()

    def alerts(self, kind: str, dag_id: str) -> float:
        """marketpipe_alerts_total summed over task ids for one kind and DAG (0 when absent)."""
        total = 0.0
        pattern = re.compile(r"^marketpipe_alerts_total\{([^}]*)\} ([0-9.e+]+)$")
        for line in self.metrics().splitlines():
            m = pattern.match(line)
            if m and f'kind="{kind}"' in m.group(1) and f'dag_id="{dag_id}"' in m.group(1):
                total += float(m.group(2))
        return total

    def latest_run(self, dag_id: str) -> tuple[str, str]:
        """(run_id, state) of the DAG's newest run."""
        rows = self.metadata(
            "select run_id, state from dag_run where dag_id = %s order by id desc limit 1", (dag_id,)
        )
        assert rows, f"no run of {dag_id}"
        return rows[0]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        rows = self.metadata(
            "select task_id, state from task_instance where dag_id = %s and run_id = %s", (dag_id, run_id)
        )
        return {task: state for task, state in rows}

    def dags_test(self, dag_id: str, conf: dict | None = None, timeout: float = 600):
        """`airflow dags test <dag_id>`: (completed process, run id, {task id: state}).

        Without the DAGs' DeadlineAlerts: Airflow 3.3.2's dag.test() crashes on a successful run of a
        DAG that has one (it looks the alert definitions up as database ids) and leaves it running.
        test_deadline.py tests the deadlines through the scheduler."""
        args = ["dags", "test", dag_id] + (["--conf", json.dumps(conf)] if conf else [])
        proc = self.cli(*args, timeout=timeout, AF_DEADLINES="false")
        run_id, _ = self.latest_run(dag_id)
        return proc, run_id, self.task_states(dag_id, run_id)

    def wait_for(self, check, timeout_s: float, interval_s: float = 1.0):
        """devstack's wait_until, returning the check's last value (truthy when it held in time)."""
        values: list = []
        wait_until(lambda: bool(values.append(check()) or values[-1]), timeout_s, interval_s)
        return values[-1]
