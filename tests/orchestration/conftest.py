"""One private Airflow for every orchestration test (session fixture): AIRFLOW_HOME in a tmp folder,
metadata in its own database and role, free ports, its own statsd_exporter, and a seeded pipeline
database `market_airflow_test` the dbt tasks build in."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest

from common.migrate import recreate_database
from common.settings import postgres_settings
from dbt_project import sample_data
from dbt_project.runner import run_dbt
from devstack import airflow as af
from devstack.statsd import StatsdExporter
from orchestration.settings import AirflowSettings
from tests.conftest import free_ports
from tests.orchestration.instance import AirflowInstance, dags_folder, drop_database

PIPELINE_DATABASE = "market_airflow_test"
METADATA_DATABASE = "airflow_test"
SYMBOLS = ("AFA", "AFB", "AFC")
HISTORY_DAYS = 60


def seed(pg) -> list[date]:
    days = sample_data.trading_days(date.today() - timedelta(days=1), HISTORY_DAYS)
    from common.db import connect

    writer = connect("writer", pg)
    try:
        sample_data.load_daily_bars(
            writer, [sample_data.daily_series(s, days, seed=i) for i, s in enumerate(SYMBOLS)]
        )
    finally:
        writer.close()
    return days


@pytest.fixture(scope="session")
def airflow_instance(stack, tmp_path_factory) -> Iterator[AirflowInstance]:
    root = tmp_path_factory.mktemp("airflow")
    api, statsd, exporter_port, stream_metrics = free_ports(4)
    pg = recreate_database(PIPELINE_DATABASE)
    drop_database(postgres_settings(), METADATA_DATABASE)
    settings = AirflowSettings(
        home=root / "home",
        dags_folder=dags_folder(root),
        api_port=api,
        database=METADATA_DATABASE,
        db_user="airflow_test",
        parallelism=3,
        statsd_port=statsd,
        statsd_exporter_port=exporter_port,
        dag_refresh_interval_s=10,
        dbt_retries=0,
        task_retries=0,
        stream_query_name="airflow_test_stream",
        stream_home=root / "stream",
        stream_checkpoint_dir=root / "checkpoint",
        stream_database=PIPELINE_DATABASE,
        stream_metrics_port=stream_metrics,
        stream_start_grace_s=5,
        stream_heartbeat_stale_s=60,
    )
    instance = af.Airflow(settings, pg)
    exporter = StatsdExporter(settings, root)
    exporter.start()
    try:
        af.start(instance, timeout_s=240)
        yield AirflowInstance(settings, pg, instance, exporter)
    finally:
        with ThreadPoolExecutor(4) as pool:  # each waits for its own SIGTERM to finish
            list(pool.map(lambda c: c.stop(), instance.components().values()))
        exporter.stop()


@pytest.fixture(scope="session")
def seeded(airflow_instance) -> list[date]:
    """The pipeline database with daily bars for three symbols and dbt's seeds (the exchange's closed
    weekdays, reference data a deployment loads once: `python -m dbt_project dbt -- seed`); no model
    has been built yet."""
    days = seed(airflow_instance.pg)
    target = airflow_instance.settings.home / "seed-target"
    result = run_dbt(["seed"], pg=airflow_instance.pg, target_path=target)
    assert result.ok, result.stdout[-2000:]
    return days
