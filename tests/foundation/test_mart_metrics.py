"""Freshness of the marts and the latest quality score, served by the real PostgreSQL exporter from
monitoring/postgres_exporter_queries.yml (the one place those metric names are defined), and the alert
rules use exactly those names."""

from __future__ import annotations

import re
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from common.db import connect
from common.migrate import drop_database, recreate_database
from common.settings import PROJECT_ROOT
from devstack.process import wait_until
from devstack.prometheus import EXPORTER_QUERIES, PostgresExporter
from tests.conftest import free_ports

TEST_DATABASE = "market_exporter_test"
RULES = sorted((PROJECT_ROOT / "monitoring" / "rules").glob("*.yml"))
PREFIXES = tuple(yaml.safe_load(EXPORTER_QUERIES.read_text()))  # marketpipe_mart, marketpipe_quality


def _defined_names() -> set[str]:
    """The exporter names a metric <top-level key>_<column>; LABEL columns are labels, not metrics."""
    names = set()
    for namespace, query in yaml.safe_load(EXPORTER_QUERIES.read_text()).items():
        for column in query["metrics"]:
            (name, spec), *_ = column.items()
            if spec["usage"] != "LABEL":
                names.add(f"{namespace}_{name}")
    return names


def test_alert_rules_use_only_the_names_the_queries_file_defines():
    used = set()
    for rules_file in RULES:
        for group in yaml.safe_load(rules_file.read_text())["groups"]:
            for rule in group["rules"]:
                used |= set(re.findall(rf"\b(?:{'|'.join(PREFIXES)})_[a-z_]+\b", rule["expr"]))
    assert used, "no alert rule reads the marts' freshness or the quality score"
    assert used <= _defined_names(), f"not defined in {EXPORTER_QUERIES.name}: {used - _defined_names()}"


def _scrape(exporter: PostgresExporter) -> dict[str, list]:
    with urllib.request.urlopen(f"http://{exporter.address}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _ours(metrics: dict[str, list]) -> dict[str, list]:
    return {name: samples for name, samples in metrics.items() if name.startswith(PREFIXES)}


@pytest.fixture
def database(stack):
    settings = recreate_database(TEST_DATABASE)
    yield settings
    drop_database(settings)


def _serve(settings, tmp_path) -> dict[str, list]:
    """Start the exporter as `make up` does (fresh, so nothing is cached), scrape it once, stop it."""
    exporter = PostgresExporter(settings, tmp_path, port=free_ports(1)[0])
    exporter.start()
    try:
        assert wait_until(exporter.healthy, 20), exporter.failure_hint()
        return _scrape(exporter)
    finally:
        exporter.stop()


def test_exporter_serves_the_newest_mart_rows_and_quality_score(database, tmp_path):
    # before dbt made anything: no series, and no query error on the scrape
    before = _serve(database, tmp_path)
    assert before["pg_up"][0].value == 1
    assert _ours(before) == {}
    assert before["pg_exporter_last_scrape_error"][0].value == 0
    assert [s.value for s in before["pg_exporter_user_queries_load_error"]] == [0]

    newest_bar = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=7)
    conn = connect("writer", database)  # dbt's role: the reader sees what it makes
    try:
        with conn, conn.cursor() as cur:
            cur.execute("create schema marts")
            cur.execute("create table marts.fct_daily_prices (symbol text, trade_date date)")
            cur.execute(
                "insert into marts.fct_daily_prices values ('AAA', '2024-03-14'), ('AAA', '2024-03-15'), "
                "('BBB', '2024-03-13')"
            )
            cur.execute("create table marts.fct_intraday_bars_1m (symbol text, bar_start timestamptz)")
            cur.execute(
                "insert into marts.fct_intraday_bars_1m values ('AAA', %s), ('BBB', %s)",
                (newest_bar, newest_bar - timedelta(minutes=1)),
            )
            cur.execute("create schema quality")
            cur.execute(
                "create table quality.run_scores (invocation_id text, score double precision, "
                "recorded_at timestamptz, orchestrator_run text)"
            )
            cur.execute(
                """
                insert into quality.run_scores values
                    ('old', 100, now() - interval '2 hours', null),
                    ('newest scored', 93.06, now() - interval '1 hour', null),
                    ('no data tests', null, now() - interval '30 minutes', null),
                    ('an Airflow task', 50, now() - interval '10 minutes', 'dbt_daily/run1')
                """
            )
    finally:
        conn.close()

    after = _ours(_serve(database, tmp_path))
    newest = {s.labels["mart"]: s.value for s in after["marketpipe_mart_newest_row_timestamp_seconds"]}
    # 2024-03-15 16:00 in New York (EDT, UTC-4) is 20:00 UTC
    assert newest["fct_daily_prices"] == datetime(2024, 3, 15, 20, tzinfo=UTC).timestamp()
    assert newest["fct_intraday_bars_1m"] == newest_bar.timestamp()
    [score] = after["marketpipe_quality_score"]
    assert (score.labels["source"], score.value) == ("dbt", 93.06)
    [recorded] = after["marketpipe_quality_recorded_timestamp_seconds"]
    assert 3500 < datetime.now(UTC).timestamp() - recorded.value < 3700
    assert set(after) == {n.removesuffix("_total") for n in _defined_names()}
