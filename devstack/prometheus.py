"""Prometheus (Debian's package) and the PostgreSQL exporter, as background processes."""

from __future__ import annotations

import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from common.settings import PROJECT_ROOT, KafkaSettings, PostgresSettings, PrometheusSettings
from devstack.errors import StackError
from devstack.process import PidFileProcess, port_open, require_free_ports, spawn

PROMETHEUS_CONFIG = PROJECT_ROOT / "monitoring" / "prometheus.yml"
# the marts' freshness and the latest quality score, read by the PostgreSQL exporter (names defined there)
EXPORTER_QUERIES = PROJECT_ROOT / "monitoring" / "postgres_exporter_queries.yml"


def render_config(prometheus: PrometheusSettings, kafka: KafkaSettings) -> str:
    """monitoring/prometheus.yml with each local target's address taken from settings."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    local_targets = {
        "prometheus": f"{prometheus.host}:{prometheus.port}",
        "kafka": [f"{host}:{jmx}" for host, _, _, jmx in kafka.node_addresses()],  # every broker
        "postgres": f"127.0.0.1:{prometheus.postgres_exporter_port}",
        "airflow": _statsd_exporter_address(),
        **_pipeline_addresses(),
    }
    for job in config["scrape_configs"]:
        if job["job_name"] in local_targets:
            targets = local_targets[job["job_name"]]
            job["static_configs"] = [{"targets": targets if isinstance(targets, list) else [targets]}]
    rules_dir = PROMETHEUS_CONFIG.parent
    config["rule_files"] = [str(rules_dir / pattern) for pattern in config.get("rule_files", [])]
    return yaml.safe_dump(config, sort_keys=False)


def _pipeline_addresses() -> dict[str, str | list[str]]:
    """Where the ingest service, the streaming job and the dashboard serve /metrics (their settings)."""
    from dashboard.settings import dashboard_settings
    from ingest.settings import ingest_settings
    from spark_streaming.settings import StreamingSettings
    from spark_streaming.shards import shard_settings

    ingest, stream, dashboard = ingest_settings(), StreamingSettings(), dashboard_settings()
    shards = [shard_settings(stream, i) for i in range(stream.shards)]  # each shard serves its own port
    return {
        "ingest": f"{ingest.metrics_host}:{ingest.metrics_port}",
        "stream": [f"{s.metrics_host}:{s.metrics_port}" for s in shards],
        "dashboard": f"{dashboard.host}:{dashboard.metrics_port}",
    }


def _statsd_exporter_address() -> str:
    from orchestration.settings import airflow_settings

    s = airflow_settings()
    return f"{s.host}:{s.statsd_exporter_port}"


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not path:
        raise StackError(f"{name} is not installed: run `make setup` (Debian package {package}).")
    return path


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


@dataclass
class Prometheus(PidFileProcess):
    settings: PrometheusSettings
    kafka: KafkaSettings
    state_dir: Path
    name: str = "prometheus"

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    @property
    def ports(self) -> list[int]:
        return [self.settings.port]

    def start(self) -> None:
        if self.running():
            return
        binary = _binary("prometheus", "prometheus")
        require_free_ports(self.name, self.settings.host, [self.settings.port])
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        config_file = self.home / "prometheus.yml"
        config_file.write_text(render_config(self.settings, self.kafka))
        spawn(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address={self.address}",
                "--storage.tsdb.retention.time=7d",
                "--web.enable-lifecycle",
            ],
            self.log_file,
            self.pid_file,
        )

    def healthy(self) -> bool:
        return port_open(self.settings.host, self.settings.port) and http_ok(f"{self.settings.url}/-/ready")


@dataclass
class PostgresExporter(PidFileProcess):
    """Debian's prometheus-postgres-exporter, reading server statistics as the reader role, and the
    project's own queries (EXPORTER_QUERIES: freshness of the marts, the latest quality score)."""

    pg: PostgresSettings
    state_dir: Path
    port: int = 9187
    name: str = "postgres-exporter"
    stop_timeout_s: float = 10.0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ports(self) -> list[int]:
        return [self.port]

    def start(self) -> None:
        if self.running():
            return
        binary = _binary("prometheus-postgres-exporter", "prometheus-postgres-exporter")
        require_free_ports(self.name, "127.0.0.1", [self.port])
        self.home.mkdir(parents=True, exist_ok=True)
        password = self.pg.reader_password.get_secret_value()
        dsn = (
            f"postgresql://{self.pg.reader_user}:{password}@{self.pg.host}:{self.pg.port}/"
            f"{self.pg.database}?sslmode=disable"
        )
        spawn(
            [binary, f"--web.listen-address={self.address}", f"--extend.query-path={EXPORTER_QUERIES}"],
            self.log_file,
            self.pid_file,
            env={"DATA_SOURCE_NAME": dsn},
        )

    def healthy(self) -> bool:
        return http_ok(f"http://{self.address}/metrics")
