"""Settings of the orchestration layer (Airflow, its DAGs and alerts), env prefix ``AF_``.

Airflow's own configuration (``AIRFLOW__SECTION__KEY``) is rendered from these by devstack/airflow.py,
so every port, path and threshold has one source of truth here. Secrets have no default: the metadata
database password, the JWT and Fernet keys and the UI password are generated on the first start into
files of mode 0600 in the Airflow home (see devstack/airflow.py), unless set here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.settings import PROJECT_ROOT, stack_settings

if TYPE_CHECKING:
    from spark_streaming.settings import StreamingSettings


class AirflowSettings(BaseSettings):
    """Everything the Airflow stack and the DAGs can be told; each field is also an ``AF_<NAME>`` variable."""

    model_config = SettingsConfigDict(
        env_prefix="AF_", env_file=PROJECT_ROOT / ".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- where it runs ----------------------------------------------------------------------------
    home: Path = Field(
        default_factory=lambda: stack_settings().state_dir / "airflow",
        description="AIRFLOW_HOME: config, logs, generated secrets, dbt artifacts for Cosmos.",
    )
    dags_folder: Path = PROJECT_ROOT / "dags"
    host: str = "127.0.0.1"
    api_port: int = Field(default=8080, description="api-server (UI, REST and execution API).")
    database: str = Field(default="airflow", description="Metadata database in the project's PostgreSQL.")
    db_user: str = Field(default="airflow", description="Role owning the metadata database.")
    db_password: SecretStr = Field(default=SecretStr(""), description="Empty: generated on first start.")
    ui_user: str = "admin"
    parallelism: int = Field(
        default=4,
        description="LocalExecutor worker processes (pre-forked): 2 cores, but a dbt task waits on "
        "PostgreSQL and a worker stays busy ~1 s after its task succeeded (with 3, dbt_daily's three marts "
        "waited 1.8 s for a slot).",
    )
    statsd_port: int = Field(default=9125, description="statsd_exporter's UDP port (Airflow sends here).")
    statsd_exporter_port: int = Field(default=9102, description="statsd_exporter's /metrics (scraped).")
    statsd_exporter_bin: Path = Field(
        default_factory=lambda: stack_settings().state_dir / "bin" / "statsd_exporter",
        description="Built by `make setup` (go install).",
    )
    preload_dbt: bool = Field(
        default=True, description="Import dbt and Cosmos in the scheduler before it forks the task workers."
    )
    preload_manifest: bool = Field(
        default=True,
        description="Also parse the dbt project once in the scheduler and give every dbt task that "
        "manifest (no per-task parse); restart Airflow after changing the dbt project.",
    )
    scheduler_idle_sleep_s: float = Field(
        default=0.2,
        description="How long the scheduler sleeps after a loop with nothing to do (Airflow's default: 1 s). "
        "It is also the gap between a task's end and its successor's start: dbt_daily has 6 levels.",
    )
    dbt_lineage: bool = Field(
        default=False,
        description="Let Cosmos compute OpenLineage events after every dbt task (it parses the manifest and "
        "run results again, about 0.2 s a task); nothing here consumes them. Applied with the preload.",
    )
    triggerer: bool = Field(
        default=False,
        description="Also run the triggerer (about 170 MiB). Only deferrable operators and AsyncCallbacks "
        "need it: the project's DAGs use neither (deadlines run their SyncCallback on the executor).",
    )
    dag_refresh_interval_s: int = Field(default=30, description="How often the dag-processor lists dags/.")

    # --- what the DAGs promise ----------------------------------------------------------------------
    quality_threshold: float = Field(
        default=80.0, description="A dbt DAG run whose data-quality score is below this fails its gate."
    )
    alert_webhook_url: str | None = Field(default=None, description="POSTed a JSON body for every alert.")
    alert_webhook_timeout_s: float = 5.0
    deadlines: bool = Field(
        default=True,
        description="Give the DAGs their DeadlineAlerts. `airflow dags test` of a DAG with one crashes in "
        "Airflow 3.3.2 when the run succeeds (dag.test looks the alert objects up as ids): the tests turn "
        "this off for `dags test` runs only.",
    )
    daily_marts_deadline_min: float = Field(
        default=90.0, description="dbt_daily's marts must be ready this long after the run was queued."
    )
    intraday_every_min: int = Field(default=5, description="dbt_intraday's period during market hours.")
    exchange: str = Field(default="XNYS", description="exchange_calendars code of the market's calendar.")
    daily_fallback_cron: str = Field(
        default="30 22 * * 1-5", description="dbt_daily runs at this UTC time too, if no bars landed."
    )
    ingest_symbols: str = Field(default="AAPL,MSFT", description="Symbols market_ingest fetches.")
    ingest_offline: bool = Field(
        default=True, description="Replay the demo's recorded history instead of calling Yahoo."
    )
    task_retries: int = Field(default=3, description="Retries of ingest tasks (exponential backoff).")
    dbt_retries: int = Field(
        default=1, description="Retries of a dbt model task (a data test failing is final)."
    )
    retry_delay_s: float = 20.0

    # --- the stream supervisor ----------------------------------------------------------------------
    stream_query_name: str = Field(default="demo_stream", description="The streaming query to supervise.")
    stream_home: Path = Field(
        default_factory=lambda: stack_settings().state_dir / "demo",
        description="Folder with the job's pid file and log (<home>/stream/stream.pid).",
    )
    stream_checkpoint_dir: Path = Field(
        default_factory=lambda: stack_settings().state_dir / "checkpoints" / "demo_stream"
    )
    stream_database: str | None = Field(
        default=None, description="Database of its sink; default PG_DATABASE."
    )
    stream_metrics_port: int = Field(
        default_factory=lambda: _stream_metrics_port(),
        description="Metrics port of the supervised job; default the stream's own (STREAM_METRICS_PORT).",
    )
    stream_shards: int = Field(
        default_factory=lambda: _streaming().shards,
        ge=1,
        description="Shard processes of the supervised job (STREAM_SHARD=0..n-1), each watched and restarted "
        "on its own: query name, checkpoint folder, metrics port, pid file and restart cap with the shard's "
        "suffix (spark_streaming/shards.py); default the stream's own (STREAM_SHARDS).",
    )
    stream_heartbeat_stale_s: float = Field(
        default=60.0, description="A heartbeat older than this means the job is dead or hung."
    )
    stream_stuck_s: float = Field(
        default=180.0, description="Lag > 0 and no committed batch for this long means the job is stuck."
    )
    stream_max_restarts_per_hour: int = 3
    stream_start_grace_s: float = Field(
        default=120.0, description="After a (re)start the job is left alone this long (Spark boots)."
    )

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def passwords_file(self) -> Path:
        """The SimpleAuthManager's password file: the UI user's generated password, mode 0600."""
        return self.home / "passwords.json"


def _streaming() -> StreamingSettings:
    from spark_streaming.settings import StreamingSettings

    return StreamingSettings()


def _stream_metrics_port() -> int:
    return _streaming().metrics_port


@lru_cache
def airflow_settings() -> AirflowSettings:
    return AirflowSettings()
