"""Settings of the dashboard: one pydantic-settings class, env prefix DASHBOARD_ (and `.env`).

The database connection itself (host, port, the reader's password) comes from common.settings'
PG_* settings; the dashboard always connects as the read-only role market_reader.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from common.settings import (
    PostgresSettings,
    _Base,
    _env_file,
    postgres_settings,
    prometheus_settings,
)
from orchestration.settings import airflow_settings


class DashboardSettings(_Base):
    model_config = SettingsConfigDict(env_prefix="DASHBOARD_", env_file=_env_file(), extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address the Streamlit server binds to.")
    port: int = Field(default=8501, description="Port of the Streamlit server (Streamlit's default).")
    metrics_port: int = Field(
        default=9110, description="Port of the dashboard process's Prometheus /metrics; 0 disables it."
    )
    database: str | None = Field(default=None, description="Database to read (default: PG_DATABASE).")
    cache_ttl_s: float = Field(
        default=30.0, description="Cache lifetime of daily, quality and health queries."
    )
    live_ttl_s: float = Field(default=0.2, description="Cache lifetime of the live (1-minute) queries.")
    live_refresh_s: float = Field(default=1.0, description="How often the live chart redraws itself.")
    tick_refresh_s: float = Field(
        default=0.5, description="How often the live header (latest tick, change, momentum) redraws itself."
    )
    statement_timeout_ms: int = Field(default=5_000, description="PostgreSQL statement_timeout per query.")
    pool_size: int = Field(default=4, description="Connections kept open to PostgreSQL.")
    default_days: int = Field(default=365, description="Daily view: calendar days shown by default.")
    max_range_days: int = Field(
        default=3_700, description="Longest date range a page accepts (about ten years and a week)."
    )
    max_compare_symbols: int = Field(default=8, description="Most symbols on the Compare chart.")
    quality_runs: int = Field(default=200, description="dbt runs shown on the quality score chart.")
    failing_runs: int = Field(default=5, description="Latest dbt runs whose failing tests are listed.")
    dead_letter_days: int = Field(default=30, description="Days of dead letters charted.")
    prometheus_url: str = Field(
        default_factory=lambda: prometheus_settings().url, description="Prometheus's HTTP API."
    )
    airflow_url: str = Field(
        default_factory=lambda: airflow_settings().api_url,
        description="Airflow's api-server (default: the project's Airflow, orchestration/settings.py).",
    )
    airflow_username: str = "admin"
    airflow_password: SecretStr = Field(
        default=SecretStr(""),
        description="Airflow password; empty: read from airflow_password_file (SimpleAuthManager).",
    )
    airflow_password_file: Path | None = Field(
        default=None,
        description="Default: the project's Airflow's password file (orchestration/settings.py).",
    )
    airflow_runs: int = Field(default=20, description="Recent DAG runs listed.")
    http_timeout_s: float = Field(default=2.0, description="Timeout of one call to Prometheus or Airflow.")

    def postgres(self) -> PostgresSettings:
        base = postgres_settings()
        return base.model_copy(update={"database": self.database}) if self.database else base

    def password_file(self) -> Path:
        if self.airflow_password_file is not None:
            return self.airflow_password_file
        return airflow_settings().passwords_file


def dashboard_settings() -> DashboardSettings:
    """Read anew on every call (cheap), so a changed environment is seen by the next rerun."""
    return DashboardSettings()
