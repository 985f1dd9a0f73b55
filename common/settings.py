"""Connection settings shared by every component, read from the environment and `.env`.

Each component adds its own settings class next to its code; these are the ones they all need.
No secret has a default: passwords come from `.env` (made by `make setup` from `.env.example`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env_file() -> Path:
    return PROJECT_ROOT / ".env"


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_file=_env_file(), env_file_encoding="utf-8", extra="ignore")


class PostgresSettings(_Base):
    """PostgreSQL: one database, an admin (owner of migrations), a writer and a read-only role."""

    model_config = SettingsConfigDict(env_prefix="PG_", env_file=_env_file(), extra="ignore")

    host: str = "127.0.0.1"
    port: int = 5432
    database: str = "market"
    admin_user: str = "postgres"
    admin_password: SecretStr = Field(default=SecretStr(""))
    writer_password: SecretStr = Field(default=SecretStr(""))
    reader_password: SecretStr = Field(default=SecretStr(""))
    # role names are fixed by db/migrations/V001__schemas_and_roles.sql
    writer_user: ClassVar[str] = "market_writer"
    reader_user: ClassVar[str] = "market_reader"
    connect_timeout_s: int = 5

    def dsn(self, role: str = "writer", database: str | None = None) -> str:
        """libpq keyword DSN for one of the three roles: admin, writer or reader."""
        user, password = {
            "admin": (self.admin_user, self.admin_password),
            "writer": (self.writer_user, self.writer_password),
            "reader": (self.reader_user, self.reader_password),
        }[role]
        parts = {
            "host": self.host,
            "port": str(self.port),
            "dbname": database or self.database,
            "user": user,
            "password": password.get_secret_value(),
            "connect_timeout": str(self.connect_timeout_s),
            "application_name": "marketpipe",
        }
        return " ".join(f"{k}='{_quote(v)}'" for k, v in parts.items())

    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"


class KafkaSettings(_Base):
    """Kafka: where clients connect, and the local single-node broker's listener ports."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", env_file=_env_file(), extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    controller_port: int = 9093
    jmx_exporter_port: int = 9404
    heap: str = "512m"


class PrometheusSettings(_Base):
    model_config = SettingsConfigDict(env_prefix="PROMETHEUS_", env_file=_env_file(), extra="ignore")

    host: str = "127.0.0.1"
    port: int = 9090
    postgres_exporter_port: int = 9187

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class ContractSettings(_Base):
    """Knobs of the message contract that producer and consumer must share (one value for both)."""

    model_config = SettingsConfigDict(env_prefix="CONTRACT_", env_file=_env_file(), extra="ignore")

    future_tolerance_ms: int = Field(
        default=5_000,
        description="Largest event or ingest time ahead of the reference clock: ingest's clock when it "
        "validates, the record's Kafka timestamp when the stream does.",
    )


class StackSettings(_Base):
    """Where generated state lives: virtualenv, database files, Kafka logs, checkpoints, jars."""

    model_config = SettingsConfigDict(env_prefix="MP_", env_file=_env_file(), extra="ignore")

    state_dir: Path = PROJECT_ROOT / ".state"
    jars_dir: Path = PROJECT_ROOT / ".state" / "jars"
    """Where `make jars` puts the JVM jars (Kafka broker, Spark connector, JDBC driver)."""


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


@lru_cache
def postgres_settings() -> PostgresSettings:
    return PostgresSettings()


@lru_cache
def kafka_settings() -> KafkaSettings:
    return KafkaSettings()


@lru_cache
def prometheus_settings() -> PrometheusSettings:
    return PrometheusSettings()


@lru_cache
def contract_settings() -> ContractSettings:
    return ContractSettings()


@lru_cache
def stack_settings() -> StackSettings:
    return StackSettings()
