"""System health from the monitoring APIs: Prometheus's HTTP API and Airflow's REST API (v2).

Plain HTTP with the standard library. Every failure (nothing listening, a timeout, an HTTP error,
a refused login, an answer that is not what the API documents) is one `Unreachable` exception whose
message the page shows as is.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from dashboard.settings import DashboardSettings

# Prometheus expressions of the page, by figure (names follow each component's metrics module)
INGEST_RATE = 'sum(rate(ingest_records_out_total{outcome="delivered"}[1m]))'
STREAM_RATE = 'sum(rate(streaming_rows_total{kind="tick"}[1m]))'
LATENCY_P95 = "histogram_quantile(0.95, sum by (le) (rate(streaming_end_to_end_latency_seconds_bucket[5m])))"
KAFKA_LAG = "max(streaming_kafka_offsets_behind_latest)"
# the stalest query: with shards (STREAM_SHARDS), the stream is only as alive as its slowest shard
HEARTBEAT_AGE = "time() - min(streaming_heartbeat_timestamp_seconds)"
TARGETS_UP = "up"

COMPONENTS = {
    "prometheus": "Prometheus",
    "kafka": "Kafka broker",
    "postgres": "PostgreSQL (exporter)",
    "ingest": "ingest",
    "stream": "streaming job",
}


class Unreachable(RuntimeError):
    """Prometheus or Airflow could not be asked (the message says which, where and why)."""


def _request(url: str, timeout_s: float, what: str, data: bytes | None = None, headers=None) -> object:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise Unreachable(f"{what} answered HTTP {exc.code} {exc.reason} for {url.split('?')[0]}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"{what} is unreachable at {url.split('?')[0]}: {reason}") from exc
    except ValueError as exc:
        raise Unreachable(f"{what} at {url.split('?')[0]} did not answer JSON") from exc


# --- Prometheus ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


def prometheus_query(settings: DashboardSettings, expr: str) -> list[Sample]:
    url = f"{settings.prometheus_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    body = _request(url, settings.http_timeout_s, "Prometheus")
    if not isinstance(body, dict) or body.get("status") != "success":
        raise Unreachable(f"Prometheus refused the query {expr!r}: {body}")
    return [Sample(item["metric"], float(item["value"][1])) for item in body["data"]["result"]]


def prometheus_range(
    settings: DashboardSettings, expr: str, minutes: int = 15, step_s: int = 15
) -> list[tuple[dict[str, str], pd.DataFrame]]:
    end = datetime.now(UTC)
    params = {
        "query": expr,
        "start": (end - timedelta(minutes=minutes)).timestamp(),
        "end": end.timestamp(),
        "step": step_s,
    }
    url = f"{settings.prometheus_url.rstrip('/')}/api/v1/query_range?{urllib.parse.urlencode(params)}"
    body = _request(url, settings.http_timeout_s, "Prometheus")
    if not isinstance(body, dict) or body.get("status") != "success":
        raise Unreachable(f"Prometheus refused the query {expr!r}: {body}")
    out = []
    for item in body["data"]["result"]:
        frame = pd.DataFrame(item["values"], columns=["time", "value"])
        frame["time"] = pd.to_datetime(frame["time"].astype(float), unit="s", utc=True)
        frame["value"] = frame["value"].astype(float)
        out.append((item["metric"], frame))
    return out


def scalar(samples: list[Sample]) -> float | None:
    """The value of a one-sample answer; None when the series does not exist (yet)."""
    return samples[0].value if samples else None


def components(settings: DashboardSettings) -> pd.DataFrame:
    """Each scrape target's job, address and whether its last scrape succeeded."""
    rows = [
        {
            "component": COMPONENTS.get(s.labels.get("job", ""), s.labels.get("job", "?")),
            "job": s.labels.get("job", ""),
            "address": s.labels.get("instance", ""),
            "state": "up" if s.value == 1 else "down",
        }
        for s in prometheus_query(settings, TARGETS_UP)
    ]
    return pd.DataFrame(rows, columns=["component", "job", "address", "state"]).sort_values("job")


# --- Airflow -------------------------------------------------------------------------------------


def airflow_password(settings: DashboardSettings) -> str:
    if settings.airflow_password.get_secret_value():
        return settings.airflow_password.get_secret_value()
    path = settings.password_file()
    try:
        passwords = json.loads(path.read_text())
    except FileNotFoundError:
        raise Unreachable(
            f"no Airflow password: set DASHBOARD_AIRFLOW_PASSWORD, or run Airflow so that {path} exists"
        ) from None
    except (OSError, ValueError) as exc:
        raise Unreachable(f"cannot read the Airflow password file {path}: {exc}") from exc
    if settings.airflow_username not in passwords:
        raise Unreachable(f"{path} has no password for the Airflow user {settings.airflow_username!r}")
    return str(passwords[settings.airflow_username])


def airflow_components(settings: DashboardSettings) -> pd.DataFrame:
    """Airflow's own components (metadata database, scheduler, dag-processor, triggerer if used) as its
    api-server reports them (`/api/v2/monitor/health`, no login needed)."""
    base = settings.airflow_url.rstrip("/")
    body = _request(f"{base}/api/v2/monitor/health", settings.http_timeout_s, "Airflow")
    if not isinstance(body, dict):
        raise Unreachable(f"Airflow at {base} answered its health check with {body!r}")
    rows = [
        {
            "component": f"Airflow {name.replace('_', '-')}",
            "state": "up" if (info or {}).get("status") == "healthy" else "down",
            "status": (info or {}).get("status"),
        }
        for name, info in body.items()
        # a triggerer that never ran is not used (AF_TRIGGERER is off by default), not down
        if not (name == "triggerer" and (info or {}).get("status") is None)
    ]
    return pd.DataFrame(rows, columns=["component", "state", "status"])


def airflow_token(settings: DashboardSettings) -> str:
    base = settings.airflow_url.rstrip("/")
    payload = json.dumps({"username": settings.airflow_username, "password": airflow_password(settings)})
    body = _request(
        f"{base}/auth/token",
        settings.http_timeout_s,
        "Airflow",
        data=payload.encode(),
        headers={"Content-Type": "application/json"},
    )
    token = body.get("access_token") if isinstance(body, dict) else None
    if not token:
        raise Unreachable(f"Airflow at {base} gave no access token")
    return str(token)


def dag_runs(settings: DashboardSettings) -> pd.DataFrame:
    """The latest DAG runs of every DAG: dag, run id, state, start, end and duration in seconds."""
    base = settings.airflow_url.rstrip("/")
    token = airflow_token(settings)
    query = urllib.parse.urlencode({"order_by": "-start_date", "limit": settings.airflow_runs})
    body = _request(
        f"{base}/api/v2/dags/~/dagRuns?{query}",
        settings.http_timeout_s,
        "Airflow",
        headers={"Authorization": f"Bearer {token}"},
    )
    runs = body.get("dag_runs", []) if isinstance(body, dict) else []
    frame = pd.DataFrame(
        [
            {
                "dag_id": r.get("dag_id"),
                "run_id": r.get("dag_run_id"),
                "state": r.get("state"),
                "start_date": r.get("start_date"),
                "end_date": r.get("end_date"),
            }
            for r in runs
        ],
        columns=["dag_id", "run_id", "state", "start_date", "end_date"],
    )
    frame["start_date"] = pd.to_datetime(frame["start_date"], utc=True, format="ISO8601")
    frame["end_date"] = pd.to_datetime(frame["end_date"], utc=True, format="ISO8601")
    frame["duration_s"] = (frame["end_date"] - frame["start_date"]).dt.total_seconds()
    return frame
