"""Prometheus's statsd_exporter (built by `make setup` with `go install`), receiving Airflow's StatsD
metrics and the alert counter on UDP and serving them to Prometheus with DAG and task ids as labels
(monitoring/statsd_mapping.yml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.settings import PROJECT_ROOT
from devstack.errors import StackError
from devstack.process import PidFileProcess, require_free_ports, spawn
from devstack.prometheus import http_ok
from orchestration.settings import AirflowSettings

STATSD_MAPPING = PROJECT_ROOT / "monitoring" / "statsd_mapping.yml"


@dataclass
class StatsdExporter(PidFileProcess):
    settings: AirflowSettings
    state_dir: Path
    name: str = "statsd-exporter"
    stop_timeout_s: float = 10.0

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.statsd_exporter_port}"

    @property
    def ports(self) -> list[int]:
        return [self.settings.statsd_exporter_port]

    def start(self) -> None:
        if self.running():
            return
        binary = self.settings.statsd_exporter_bin
        if not binary.exists():
            raise StackError(f"statsd_exporter is not installed at {binary}: run `make setup`.")
        require_free_ports(self.name, self.settings.host, self.ports)
        self.home.mkdir(parents=True, exist_ok=True)
        spawn(
            [
                str(binary),
                f"--web.listen-address={self.address}",
                f"--statsd.listen-udp={self.settings.host}:{self.settings.statsd_port}",
                "--statsd.listen-tcp=",
                f"--statsd.mapping-config={STATSD_MAPPING}",
                "--log.level=warn",
            ],
            self.log_file,
            self.pid_file,
        )

    def healthy(self) -> bool:
        return http_ok(f"http://{self.address}/metrics")
