"""One way out for every alert of the orchestration layer: task failures, retries, missed deadlines,
the quality gate and the stream supervisor all call `alert()`, which

1. writes one structured log line (``event=alert kind=... dag_id=... task_id=... message=...``),
2. counts it in Prometheus: ``marketpipe_alerts_total{kind,dag_id,task_id}``, sent as a DogStatsD
   counter to statsd_exporter (the processes that alert are short-lived tasks and callbacks, so the
   counter lives in the exporter Prometheus scrapes, beside Airflow's own metrics),
3. POSTs a JSON body to ``AF_ALERT_WEBHOOK_URL`` when it is set.

None of the three may raise: an alert about a failure must not fail in turn.
The callbacks below are what DAGs pass as ``on_failure_callback``/``on_retry_callback`` and, for
deadlines, a SyncCallback (the LocalExecutor runs it in a worker; no triggerer needed).
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from orchestration.settings import AirflowSettings, airflow_settings

log = logging.getLogger("marketpipe.alerts")

COUNTER = "marketpipe_alerts_total"


@dataclass(frozen=True)
class Alert:
    kind: str  # failure | retry | deadline | quality | stream_restart | stream_restart_capped
    dag_id: str
    task_id: str
    run_id: str
    message: str
    at: str


def _tag(value: str) -> str:
    """DogStatsD tag values cannot hold ',', '|', '#' or ':'."""
    return "".join("_" if c in ",|#: " else c for c in value) or "none"


def _count(alert: Alert, s: AirflowSettings) -> None:
    line = f"{COUNTER}:1|c|#kind:{_tag(alert.kind)},dag_id:{_tag(alert.dag_id)},task_id:{_tag(alert.task_id)}"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(line.encode(), (s.host, s.statsd_port))
    except OSError as exc:
        log.warning("event=alert_counter_failed error=%s", exc)


def _post(alert: Alert, s: AirflowSettings) -> None:
    if not s.alert_webhook_url:
        return
    request = urllib.request.Request(
        s.alert_webhook_url,
        data=json.dumps(asdict(alert)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=s.alert_webhook_timeout_s) as resp:
            resp.read()
    except OSError as exc:
        log.warning("event=alert_webhook_failed url=%s error=%s", s.alert_webhook_url, exc)


def alert(
    kind: str, message: str, dag_id: str = "-", task_id: str = "-", run_id: str = "-", settings=None
) -> Alert:
    s = settings or airflow_settings()
    a = Alert(kind, dag_id, task_id, run_id, message, datetime.now(UTC).isoformat(timespec="seconds"))
    log.error(
        "event=alert kind=%s dag_id=%s task_id=%s run_id=%s message=%s",
        a.kind,
        a.dag_id,
        a.task_id,
        a.run_id,
        json.dumps(a.message),
    )
    _count(a, s)
    _post(a, s)
    return a


# --- callbacks ---------------------------------------------------------------------------------------
def _from_context(kind: str, context: dict[str, Any]) -> Alert:
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "-")
    task_id = getattr(ti, "task_id", "-")
    run_id = getattr(ti, "run_id", None) or str(context.get("run_id", "-"))
    exc = context.get("exception")
    try_number = getattr(ti, "try_number", "?")
    detail = f": {str(exc).strip().splitlines()[0][:500]}" if exc and str(exc).strip() else ""
    return alert(kind, f"{dag_id}.{task_id} try {try_number} {kind}{detail}", dag_id, task_id, run_id)


def on_failure(context: dict[str, Any]) -> None:
    """on_failure_callback of every task of the project's DAGs."""
    _from_context("failure", context)


def on_retry(context: dict[str, Any]) -> None:
    """on_retry_callback of every task of the project's DAGs."""
    _from_context("retry", context)


def on_deadline_missed(**kwargs: Any) -> None:
    """SyncCallback of the DAGs' DeadlineAlerts (an executor worker runs it, with `context`)."""
    context = kwargs.get("context") or {}
    dag_run = context.get("dag_run") or {}
    dag_id = kwargs.get("dag_id") or _get(dag_run, "dag_id") or "-"
    run_id = _get(dag_run, "run_id") or "-"
    promise = kwargs.get("promise", "the DAG run's deadline")
    deadline = _get(context.get("deadline") or {}, "deadline_time")
    alert("deadline", f"{dag_id} missed {promise} (deadline {deadline})", dag_id, "-", str(run_id))


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)
