"""Prometheus answers its HTTP API, scrapes itself, and its rules are valid."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request

from common.settings import PROJECT_ROOT, prometheus_settings


def _query(expr: str) -> list[dict]:
    url = f"{prometheus_settings().url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success"
    return body["data"]["result"]


def _poll(expr: str, timeout_s: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        result = _query(expr)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_prometheus_answers_its_api_and_shows_its_own_target_up(stack):
    result = _poll('up{job="prometheus"} == 1')
    assert result, "prometheus has not scraped itself"
    assert result[0]["value"][1] == "1"


def test_kafka_and_postgres_exporters_are_scraped_and_up(stack):
    for job in ("kafka", "postgres"):
        result = _poll(f'up{{job="{job}"}} == 1')
        assert result, f"target {job} is not up"
    assert _poll("pg_up == 1"), "the PostgreSQL exporter cannot reach the database"


def test_postgres_exporter_runs_the_project_queries_without_errors(stack):
    """`make up` gives the exporter monitoring/postgres_exporter_queries.yml (marts' freshness, quality
    score); the values themselves are checked against a database with marts in test_mart_metrics.py."""
    loaded = _poll(
        'pg_exporter_user_queries_load_error{job="postgres", filename=~".*/postgres_exporter_queries.yml"}'
    )
    assert [r["value"][1] for r in loaded] == ["0"], f"the queries file was not loaded: {loaded}"
    assert _poll('pg_exporter_last_scrape_error{job="postgres"} == 0'), "a query of the exporter fails"


def test_alert_rules_pass_promtool():
    rules = sorted((PROJECT_ROOT / "monitoring" / "rules").glob("*.yml"))
    result = subprocess.run(["promtool", "check", "rules", *map(str, rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
