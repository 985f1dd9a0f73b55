"""A single-node Apache Kafka 4 broker in KRaft mode, run from the jars in the state folder."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from common.contract import TOPICS, TopicSpec
from common.settings import PROJECT_ROOT, KafkaSettings, stack_settings
from devstack.errors import StackError
from devstack.process import PidFileProcess, port_open, require_free_ports, spawn, tail

LOG4J_CONFIG = PROJECT_ROOT / "config" / "kafka" / "log4j2.properties"
JMX_CONFIG = PROJECT_ROOT / "monitoring" / "kafka-jmx.yml"
NODE_ID = 1


def new_cluster_id(draw: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """What `kafka-storage random-uuid` prints: a random UUID (from `draw`) in base64url without padding.

    Like Kafka's own `Uuid.randomUuid`, it never starts with "-": the storage tool's argument
    parser would read such an id as an option and refuse it (1 run in 64 failed that way).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(draw().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(settings: KafkaSettings, log_dir: Path) -> dict[str, str]:
    """The broker's configuration; docker-compose.yml mirrors it (tests/foundation checks)."""
    host, port = settings.bootstrap_servers.split(",")[0].rsplit(":", 1)
    return {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.bootstrap.servers": f"{host}:{settings.controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{settings.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "3",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "log.retention.check.interval.ms": "300000",
    }


@dataclass
class Kafka(PidFileProcess):
    settings: KafkaSettings
    state_dir: Path
    jars_dir: Path | None = None
    name: str = "kafka"
    stop_timeout_s: float = 30.0

    @property
    def log_dir(self) -> Path:
        return self.home / "data"

    @property
    def jars(self) -> Path:
        return self.jars_dir or stack_settings().jars_dir / "kafka"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.settings.bootstrap_servers.split(",")[0].rsplit(":", 1)
        return host, int(port)

    @property
    def address(self) -> str:
        return self.settings.bootstrap_servers

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        if java_home:
            java = Path(java_home) / "bin" / "java"
            if not os.access(java, os.X_OK):
                raise StackError(f"Java was not found at {java} (from JAVA_HOME): Kafka needs Java 17+.")
            return str(java)
        found = shutil.which("java")
        if not found:
            raise StackError("Java is not installed or not on PATH: Kafka needs Java 17+ (`make setup`).")
        return found

    @property
    def ports(self) -> list[int]:
        return [self.host_port[1], self.settings.controller_port, self.settings.jmx_exporter_port]

    def _classpath(self) -> str:
        if not self.jars.is_dir() or not any(self.jars.glob("kafka_2.13-*.jar")):
            raise StackError(f"Kafka jars are missing in {self.jars}: run `make setup`.")
        return f"{self.jars}/*"

    def _jmx_agent(self) -> str:
        agent = next(self.jars.glob("jmx_prometheus_javaagent-*.jar"), None)
        if agent is None:
            raise StackError(f"the JMX exporter jar is missing in {self.jars}: run `make setup`.")
        host, _ = self.host_port
        return f"-javaagent:{agent}={host}:{self.settings.jmx_exporter_port}:{JMX_CONFIG}"

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        props = server_properties(self.settings, self.log_dir)
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def format_storage(self, cluster_id: str | None = None) -> bool:
        """Format the KRaft storage once, with a new cluster id unless given; False when already done."""
        if (self.log_dir / "meta.properties").exists():
            return False
        if self.log_dir.exists() and any(self.log_dir.iterdir()):
            raise StackError(
                f"Kafka log directory {self.log_dir} is damaged (no meta.properties); "
                "move it away or run `make clean-state`."
            )
        java, cp = self._java(), self._classpath()
        cluster_id = cluster_id or new_cluster_id()
        result = subprocess.run(
            [
                java,
                "-cp",
                cp,
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(self.config_file),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            output = (result.stderr.strip() or result.stdout.strip())[-500:]
            raise StackError(f"formatting Kafka storage failed (exit {result.returncode}): {output}")
        return True

    def start(self) -> None:
        """Spawn the broker; returns at once (see `healthy` and `wait_healthy`)."""
        if self.running():
            return
        host, port = self.host_port
        java, cp = self._java(), self._classpath()
        require_free_ports(
            self.name, host, [port, self.settings.controller_port, self.settings.jmx_exporter_port]
        )
        self.write_config()
        self.format_storage()
        cmd = [
            java,
            f"-Xms{self.settings.heap}",
            f"-Xmx{self.settings.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            self._jmx_agent(),
            "-cp",
            cp,
            "kafka.Kafka",
            str(self.config_file),
        ]
        spawn(cmd, self.log_file, self.pid_file)

    def admin(self) -> AdminClient:
        return AdminClient(
            {"bootstrap.servers": self.settings.bootstrap_servers, "socket.timeout.ms": 2000, "log_level": 4}
        )

    def healthy(self) -> bool:
        host, port = self.host_port
        if not port_open(host, port):
            return False
        try:
            meta = self.admin().list_topics(timeout=2)
        except KafkaException:
            return False
        return len(meta.brokers) >= 1

    def failure_hint(self) -> str:
        if not self.running():
            return f"the broker exited (see {self.log_file}): {tail(self.log_file, 3)}"
        return f"the broker is not answering on {self.address} (see {self.log_file})"

    @staticmethod
    def _wait_for_metadata(admin: AdminClient, names: list[str], timeout_s: float = 30.0) -> dict:
        """Topic metadata once every topic in `names` shows up with its partitions: a topic just
        created can be missing from the broker's metadata for a moment (seen under load in CI)."""

        def missing(meta: dict) -> list[str]:
            return [n for n in names if n not in meta or not meta[n].partitions]

        @retry(
            stop=stop_after_delay(timeout_s),
            wait=wait_fixed(0.2),
            retry=retry_if_result(lambda meta: bool(missing(meta))),
            retry_error_callback=lambda state: state.outcome.result(),  # the last metadata, not an error
        )
        def metadata() -> dict:
            return admin.list_topics(timeout=10).topics

        meta = metadata()
        if late := missing(meta):
            raise StackError(f"topic(s) {', '.join(late)} missing from the broker's metadata after creation")
        return meta

    def ensure_topics(self, specs: dict | None = None) -> list[str]:
        """Create the contract's topics with their partitions and retention; returns those created."""
        specs = specs or TOPICS
        admin = self.admin()
        existing = admin.list_topics(timeout=10).topics
        created: list[str] = []
        new = [
            NewTopic(
                spec.name.value, num_partitions=spec.partitions, replication_factor=1, config=spec.config()
            )
            for spec in specs.values()
            if spec.name.value not in existing
        ]
        if new:
            for topic, fut in admin.create_topics(new, operation_timeout=30).items():
                try:
                    fut.result()
                    created.append(topic)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise StackError(f"creating topic {topic} failed: {exc.args[0].str()}") from exc
        self._check_topics(admin, specs)
        return created

    def _check_topics(self, admin: AdminClient, specs: dict) -> None:
        meta = self._wait_for_metadata(admin, [spec.name.value for spec in specs.values()])
        for spec in specs.values():
            spec: TopicSpec
            have = len(meta[spec.name.value].partitions)
            if have != spec.partitions:
                raise StackError(
                    f"topic {spec.name.value} has {have} partitions but the contract says {spec.partitions}; "
                    "partitions can only grow: fix common/contract.py or recreate the topic."
                )
        resources = [ConfigResource(ConfigResource.Type.TOPIC, spec.name.value) for spec in specs.values()]
        for res, fut in admin.describe_configs(resources).items():
            configs = fut.result()
            spec = next(s for s in specs.values() if s.name.value == res.name)
            want = spec.config()
            drift = {k: v for k, v in want.items() if k in configs and configs[k].value != v}
            if drift:
                entries = [
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in drift.items()
                ]
                alter = ConfigResource(ConfigResource.Type.TOPIC, res.name, incremental_configs=entries)
                admin.incremental_alter_configs([alter])[alter].result()
