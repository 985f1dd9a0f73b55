"""Prometheus (Debian's package) and the PostgreSQL exporter, as background processes."""

from __future__ import annotations

import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from common.settings import PROJECT_ROOT, PostgresSettings, PrometheusSettings
from devstack.errors import StackError
from devstack.process import port_open, read_pid, require_free_ports, spawn, tail, terminate

PROMETHEUS_CONFIG = PROJECT_ROOT / "monitoring" / "prometheus.yml"
POSTGRES_EXPORTER_PORT = 9187


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
class Prometheus:
    settings: PrometheusSettings
    state_dir: Path
    name: str = "prometheus"

    @property
    def home(self) -> Path:
        return self.state_dir / "prometheus"

    @property
    def pid_file(self) -> Path:
        return self.home / "prometheus.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "prometheus.log"

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def start(self) -> None:
        if self.running():
            return
        binary = _binary("prometheus", "prometheus")
        require_free_ports(self.name, self.settings.host, [self.settings.port])
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        spawn(
            [
                binary,
                f"--config.file={PROMETHEUS_CONFIG}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address={self.address}",
                "--storage.tsdb.retention.time=7d",
                "--web.enable-lifecycle",
            ],
            self.log_file,
            self.pid_file,
        )

    def stop(self) -> bool:
        return terminate(self.pid_file, timeout_s=20)

    def healthy(self) -> bool:
        return port_open(self.settings.host, self.settings.port) and http_ok(f"{self.settings.url}/-/ready")

    def failure_hint(self) -> str:
        return f"see {self.log_file}: {tail(self.log_file, 2)}"


@dataclass
class PostgresExporter:
    """Debian's prometheus-postgres-exporter, reading server statistics as the reader role."""

    pg: PostgresSettings
    state_dir: Path
    port: int = POSTGRES_EXPORTER_PORT
    name: str = "postgres-exporter"

    @property
    def home(self) -> Path:
        return self.state_dir / "postgres-exporter"

    @property
    def pid_file(self) -> Path:
        return self.home / "exporter.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "exporter.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

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
            [binary, f"--web.listen-address={self.address}"],
            self.log_file,
            self.pid_file,
            env={"DATA_SOURCE_NAME": dsn},
        )

    def stop(self) -> bool:
        return terminate(self.pid_file, timeout_s=10)

    def healthy(self) -> bool:
        return http_ok(f"http://{self.address}/metrics")

    def failure_hint(self) -> str:
        return f"see {self.log_file}: {tail(self.log_file, 2)}"
