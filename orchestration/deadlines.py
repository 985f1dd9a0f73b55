"""Airflow 3 DeadlineAlerts for the DAGs that make a time promise; a missed deadline goes through
orchestration.alerts (SyncCallback: the executor runs it, so no triggerer is needed)."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback

from orchestration.settings import airflow_settings


def within(interval: timedelta, promise: str, always: bool = False) -> DeadlineAlert | None:
    """The DAG run must finish within `interval` of being queued; else alert that `promise` was missed.
    None when AF_DEADLINES is off (see settings), unless `always`."""
    if not (always or airflow_settings().deadlines):
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=interval,
        callback=SyncCallback("orchestration.alerts.on_deadline_missed", kwargs={"promise": promise}),
    )
