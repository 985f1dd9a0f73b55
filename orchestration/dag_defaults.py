"""What every project DAG shares: start date, owner, retries with exponential backoff, the alert
callbacks. Light to import (no Cosmos, no dbt): the dag-processor imports it for every DAG file."""

from __future__ import annotations

from datetime import datetime, timedelta

from orchestration import alerts
from orchestration.settings import airflow_settings

START = datetime(2026, 1, 1)


def default_args(retries: int) -> dict:
    s = airflow_settings()
    return {
        "owner": "marketpipe",
        "retries": retries,
        "retry_delay": timedelta(seconds=s.retry_delay_s),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
        "on_failure_callback": alerts.on_failure,
        "on_retry_callback": alerts.on_retry,
    }
