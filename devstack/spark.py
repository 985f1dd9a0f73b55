"""A Spark standalone cluster on loopback from pip's pyspark (no Spark tarball): one master and N
workers, each a JVM started by pyspark's own ``bin/spark-class``. The streaming job runs on it when its
master is the cluster's URL (``STREAM_MASTER=spark://127.0.0.1:7077``); local mode is the same code.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.settings import PROJECT_ROOT
from devstack.errors import StackError
from devstack.process import PidFileProcess, require_free_ports, spawn


class SparkClusterSettings(BaseSettings):
    """The local standalone cluster (env prefix ``SPARK_CLUSTER_``)."""

    model_config = SettingsConfigDict(
        env_prefix="SPARK_CLUSTER_", env_file=PROJECT_ROOT / ".env", env_file_encoding="utf-8", extra="ignore"
    )

    host: str = "127.0.0.1"
    master_port: int = 7077
    master_webui_port: int = Field(
        default=8090, description="The master's web UI and /json/ (8080 is Airflow's)."
    )
    workers: int = Field(default=2, ge=1)
    worker_cores: int = 1
    worker_memory: str = Field(default="1g", description="Memory a worker offers its executors.")
    worker_port: int = Field(default=7078, description="Worker i (1-based) listens on this + i - 1.")
    worker_webui_port: int = Field(default=8091, description="Worker i's web UI on this + i - 1.")
    daemon_memory: str = Field(default="256m", description="Heap of the master and worker JVMs themselves.")

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"


def spark_home() -> Path:
    """The pyspark package folder: its bin/ has spark-class and its jars/ all of Spark."""
    import pyspark

    home = Path(pyspark.__file__).resolve().parent
    if not (home / "bin" / "spark-class").exists():
        raise StackError(f"pyspark at {home} has no bin/spark-class: reinstall pyspark (`make venv`).")
    return home


def _get_json(url: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


@dataclass
class _SparkDaemon(PidFileProcess):
    settings: SparkClusterSettings
    state_dir: Path
    stop_timeout_s: float = 15.0

    @cached_property
    def _home(self) -> Path:
        return spark_home()

    def _env(self) -> dict[str, str]:
        return {
            "SPARK_HOME": str(self._home),
            "SPARK_LOG_DIR": str(self.home / "logs"),
            "SPARK_WORKER_DIR": str(self.home / "work"),
            "SPARK_LOCAL_IP": self.settings.host,  # else the web UI binds every interface
            "SPARK_DAEMON_MEMORY": self.settings.daemon_memory,
            "SPARK_NO_DAEMONIZE": "1",
            # the master's REST submission server would take port 6066 on every cluster: not needed
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        }

    def _spawn(self, main_class: str, args: list[str]) -> None:
        require_free_ports(self.name, self.settings.host, self.ports)
        (self.home / "work").mkdir(parents=True, exist_ok=True)
        # spark-class execs the JVM: the pid file holds the JVM's pid
        spawn(
            [str(self._home / "bin" / "spark-class"), main_class, *args],
            self.log_file,
            self.pid_file,
            self._env(),
        )

    def master_state(self) -> dict | None:
        """The master's /json/ document: workers, their state and cores in use, applications."""
        return _get_json(f"http://{self.settings.host}:{self.settings.master_webui_port}/json/")


@dataclass
class SparkMaster(_SparkDaemon):
    name: str = "spark-master"

    @property
    def address(self) -> str:
        return self.settings.master_url

    @property
    def ports(self) -> list[int]:
        return [self.settings.master_port, self.settings.master_webui_port]

    def start(self) -> None:
        if self.running():
            return
        s = self.settings
        self._spawn(
            "org.apache.spark.deploy.master.Master",
            ["--host", s.host, "--port", str(s.master_port), "--webui-port", str(s.master_webui_port)],
        )

    def healthy(self) -> bool:
        state = self.master_state()
        return state is not None and state.get("status") == "ALIVE"


@dataclass
class SparkWorker(_SparkDaemon):
    index: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"spark-worker-{self.index}"

    @property
    def port(self) -> int:
        return self.settings.worker_port + self.index - 1

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    @property
    def ports(self) -> list[int]:
        return [self.port, self.settings.worker_webui_port + self.index - 1]

    def start(self) -> None:
        if self.running():
            return
        s = self.settings
        self._spawn(
            "org.apache.spark.deploy.worker.Worker",
            [
                "--host", s.host, "--port", str(self.port), "--webui-port", str(self.ports[1]),
                "--cores", str(s.worker_cores), "--memory", s.worker_memory,
                "--work-dir", str(self.home / "work"), s.master_url,
            ],
        )  # fmt: skip

    def registration(self) -> dict | None:
        """This worker as the master lists it (state ALIVE once registered, cores in use)."""
        state = self.master_state() or {}
        return next((w for w in state.get("workers", []) if w.get("port") == self.port), None)

    def healthy(self) -> bool:
        worker = self.registration()
        return worker is not None and worker.get("state") == "ALIVE"


def cluster(settings: SparkClusterSettings, state_dir: Path) -> tuple[SparkMaster, list[SparkWorker]]:
    return SparkMaster(settings, state_dir), [
        SparkWorker(settings, state_dir, index=i) for i in range(1, settings.workers + 1)
    ]


def services(settings: SparkClusterSettings, state_dir: Path) -> dict[str, _SparkDaemon]:
    """The master, then the workers, by name (shown by `status`, started by `devstack spark`)."""
    master, workers = cluster(settings, state_dir)
    return {master.name: master, **{w.name: w for w in workers}}
