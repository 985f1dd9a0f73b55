"""System health reads the real Prometheus; an unreachable Prometheus or Airflow is one clear message."""

from __future__ import annotations

import json
import urllib.request

import pytest

from common.settings import prometheus_settings
from dashboard import health
from dashboard.settings import DashboardSettings
from tests.dashboard.conftest import closed_port
from tests.dashboard.helpers import no_exception, run_page


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


def test_health_page_shows_each_scrape_target_as_prometheus_reports_it(dashboard_db, monkeypatch):
    monkeypatch.setenv("DASHBOARD_AIRFLOW_URL", f"http://127.0.0.1:{closed_port()}")
    at = run_page("health")
    no_exception(at)
    table = next(d.value for d in at.dataframe if "component" in d.value.columns).set_index("job")
    with urllib.request.urlopen(f"{prometheus_settings().url}/api/v1/query?query=up", timeout=5) as r:
        up = {s["metric"]["job"]: s["value"][1] for s in json.load(r)["data"]["result"]}
    assert up["prometheus"] == "1"
    assert table.loc["prometheus", "state"] == "up"
    assert {job: ("up" if v == "1" else "down") for job, v in up.items()} == table["state"].to_dict()
    labels = {m.label for m in at.metric}
    assert {
        "Ingest throughput",
        "Stream throughput",
        "End-to-end latency p95",
        "Kafka lag (max per partition)",
    } <= labels
    assert not any("Prometheus" in e for e in _errors(at))
    assert any("Airflow is unreachable at" in e for e in _errors(at))


def test_health_page_says_prometheus_and_airflow_are_unreachable_without_a_stack_trace(
    dashboard_db, monkeypatch
):
    monkeypatch.setenv("DASHBOARD_PROMETHEUS_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("DASHBOARD_AIRFLOW_URL", f"http://127.0.0.1:{closed_port()}")
    at = run_page("health")
    no_exception(at)
    errors = _errors(at)
    assert len(errors) == 2, errors
    assert errors[0].startswith("Prometheus is unreachable at http://127.0.0.1:")
    assert "Connection refused" in errors[0]
    assert errors[1].startswith("Airflow is unreachable at http://127.0.0.1:")
    assert not at.dataframe  # no half-drawn tables


def test_airflow_dag_runs_when_an_airflow_answers(dashboard_db):
    """Only where the project's Airflow runs (`make airflow`): the whole page against it. Skipped
    elsewhere (CI starts no shared Airflow); the same reads against a real Airflow run in CI in
    tests/orchestration/test_dashboard_airflow.py, on the orchestration tests' private Airflow."""
    settings = DashboardSettings()
    try:
        runs = health.dag_runs(settings)
    except health.Unreachable as exc:
        pytest.skip(f"no Airflow to read here: {exc}")
    assert list(runs.columns) == ["dag_id", "run_id", "state", "start_date", "end_date", "duration_s"]
    finished = runs.dropna(subset=["end_date"])
    assert (finished["duration_s"] >= 0).all()
    at = run_page("health")
    no_exception(at)
    assert not any("Airflow" in e for e in _errors(at))
    with urllib.request.urlopen(f"{settings.airflow_url}/api/v2/monitor/health", timeout=5) as r:
        reported = {k: v["status"] for k, v in json.load(r).items()}
    shown = next(d.value for d in at.dataframe if "status" in d.value.columns)
    assert sorted(shown["status"]) == sorted(reported.values())
    assert len(shown) == len(reported) >= 3
    if runs.empty:
        assert any("no DAG runs yet" in i.value for i in at.info)
    else:
        shown = next(d.value for d in at.dataframe if "run_id" in d.value.columns)
        assert set(shown["run_id"]) <= set(health.dag_runs(settings)["run_id"]) | set(runs["run_id"])
