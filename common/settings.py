"""Connection settings shared by every component, read from the environment and `.env`.

Each component adds its own settings class next to its code; these are the ones they all need.
No secret has a default: passwords come from `.env` (made by `make setup` from `.env.example`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator
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
    """Kafka: where clients connect, and the local KRaft nodes' listener ports.

    With ``nodes`` > 1 devstack runs that many combined controller+broker nodes in one quorum. Node i
    (0-based) listens on the i-th address of ``bootstrap_servers``; addresses the list lacks are the
    first one's port plus ``i * node_port_step``, and its controller and JMX exporter ports are the
    first node's plus ``i * node_port_step``. So ``KAFKA_NODES=3`` alone gives brokers on 9092, 9192
    and 9292, and ``bootstrap_servers`` then lists all three (what every client reads).
    """

    model_config = SettingsConfigDict(env_prefix="KAFKA_", env_file=_env_file(), extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    controller_port: int = 9093
    jmx_exporter_port: int = 9404
    heap: str = "512m"
    nodes: int = Field(default=1, ge=1, description="KRaft nodes devstack runs: 1 (the demo) or 3.")
    node_port_step: int = Field(default=100, ge=1, description="Port distance between two nodes' ports.")
    broker_session_timeout_ms: int = Field(
        default=3_000,
        ge=1_000,
        description="Cluster only: a broker silent this long is fenced and its partitions fail over.",
    )

    @model_validator(mode="after")
    def _every_node_in_bootstrap(self) -> KafkaSettings:
        listed = [a.strip() for a in self.bootstrap_servers.split(",") if a.strip()]
        if len(listed) < self.nodes:
            host, port = listed[0].rsplit(":", 1)
            listed += [
                f"{host}:{int(port) + i * self.node_port_step}" for i in range(len(listed), self.nodes)
            ]
            self.bootstrap_servers = ",".join(listed)
        return self

    def node_addresses(self) -> list[tuple[str, int, int, int]]:
        """(host, broker port, controller port, JMX exporter port) of each node, node 1 first."""
        listed = [a.strip() for a in self.bootstrap_servers.split(",") if a.strip()][: self.nodes]
        out = []
        for i, address in enumerate(listed):
            host, port = address.rsplit(":", 1)
            step = i * self.node_port_step
            out.append((host, int(port), self.controller_port + step, self.jmx_exporter_port + step))
        return out


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
