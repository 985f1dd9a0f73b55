"""Apache Kafka 4 in KRaft mode, run from the jars in the state folder: one node (the default) or a
cluster of combined controller+broker nodes in one static quorum (KafkaSettings.nodes), each node with
its own ports and data folder."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from common.contract import TOPICS, TopicSpec, replication
from common.settings import PROJECT_ROOT, KafkaSettings, stack_settings
from devstack.errors import StackError
from devstack.process import PidFileProcess, port_open, require_free_ports, spawn, tail

LOG4J_CONFIG = PROJECT_ROOT / "config" / "kafka" / "log4j2.properties"
JMX_CONFIG = PROJECT_ROOT / "monitoring" / "kafka-jmx.yml"
NODE_ID = 1
"""The single node's id; nodes of a cluster are 1..n."""


def new_cluster_id(draw: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """What `kafka-storage random-uuid` prints: a random UUID (from `draw`) in base64url without padding.

    Like Kafka's own `Uuid.randomUuid`, it never starts with "-": the storage tool's argument
    parser would read such an id as an option and refuse it (1 run in 64 failed that way).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(draw().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(settings: KafkaSettings, log_dir: Path, node_id: int = NODE_ID) -> dict[str, str]:
    """Node `node_id`'s configuration; docker-compose.yml mirrors the single node's (tests/foundation
    checks). A cluster's nodes are voters of one static quorum and replicate the internal topics as the
    contract's topics are (common.contract.replication)."""
    host, port, controller, _ = settings.node_addresses()[node_id - 1]
    rep = replication(settings.nodes)
    if settings.nodes == 1:
        quorum = {"controller.quorum.bootstrap.servers": f"{host}:{controller}"}
    else:
        voters = ",".join(f"{i}@{h}:{c}" for i, (h, _, c, _) in enumerate(settings.node_addresses(), 1))
        quorum = {"controller.quorum.voters": voters}
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        **quorum,
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "3",
        "offsets.topic.replication.factor": str(rep.factor),
        "transaction.state.log.replication.factor": str(rep.factor),
        "transaction.state.log.min.isr": str(rep.min_insync_replicas),
        "share.coordinator.state.topic.replication.factor": str(rep.factor),
        "share.coordinator.state.topic.min.isr": str(rep.min_insync_replicas),
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "log.retention.check.interval.ms": "300000",
    }
    if settings.nodes > 1:
        props["default.replication.factor"] = str(rep.factor)
        props["min.insync.replicas"] = str(rep.min_insync_replicas)
        # a dead broker is fenced (dropped from every ISR, its partitions get new leaders) once it
        # missed heartbeats for this long; Kafka's 9 s default alone would exceed the 10 s failover goal
        props["broker.heartbeat.interval.ms"] = "500"
        props["broker.session.timeout.ms"] = str(settings.broker_session_timeout_ms)
    return props


def node_name(settings: KafkaSettings, node_id: int) -> str:
    """`kafka` for the single node, `kafka-1` ... `kafka-n` for a cluster's (each its own state folder)."""
    return "kafka" if settings.nodes == 1 else f"kafka-{node_id}"


@dataclass
class Kafka(PidFileProcess):
    """One KRaft node (combined controller and broker): node `node_id` of `settings.nodes`."""

    settings: KafkaSettings
    state_dir: Path
    jars_dir: Path | None = None
    name: str = ""
    stop_timeout_s: float = 30.0
    node_id: int = NODE_ID

    def __post_init__(self) -> None:
        if not 1 <= self.node_id <= self.settings.nodes:
            raise StackError(
                f"Kafka node {self.node_id} does not exist: KAFKA_NODES is {self.settings.nodes}"
            )
        self.name = self.name or node_name(self.settings, self.node_id)

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
    def _node(self) -> tuple[str, int, int, int]:
        return self.settings.node_addresses()[self.node_id - 1]

    @property
    def host_port(self) -> tuple[str, int]:
        host, port, _, _ = self._node
        return host, port

    @property
    def controller_port(self) -> int:
        return self._node[2]

    @property
    def jmx_exporter_port(self) -> int:
        return self._node[3]

    @property
    def address(self) -> str:
        if self.settings.nodes == 1:
            return self.settings.bootstrap_servers
        host, port = self.host_port
        return f"{host}:{port}"

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
        return [self.host_port[1], self.controller_port, self.jmx_exporter_port]

    def _classpath(self) -> str:
        if not self.jars.is_dir() or not any(self.jars.glob("kafka_2.13-*.jar")):
            raise StackError(f"Kafka jars are missing in {self.jars}: run `make setup`.")
        return f"{self.jars}/*"

    def _jmx_agent(self) -> str:
        agent = next(self.jars.glob("jmx_prometheus_javaagent-*.jar"), None)
        if agent is None:
            raise StackError(f"the JMX exporter jar is missing in {self.jars}: run `make setup`.")
        host, _ = self.host_port
        return f"-javaagent:{agent}={host}:{self.jmx_exporter_port}:{JMX_CONFIG}"

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        props = server_properties(self.settings, self.log_dir, self.node_id)
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def cluster_id(self) -> str | None:
        """The cluster id this node's storage was formatted with, None before formatting."""
        meta = self.log_dir / "meta.properties"
        if not meta.exists():
            return None
        for line in meta.read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
        return None

    def format_storage(self, cluster_id: str | None = None) -> bool:
        """Format the KRaft storage once, with a new cluster id unless given; False when already done.

        A single node formats a standalone (dynamic) quorum of itself; a cluster's nodes share the
        static voter set of their configuration and must all get the same `cluster_id`."""
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
                *(["--standalone"] if self.settings.nodes == 1 else []),
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

    def start(self, cluster_id: str | None = None) -> None:
        """Spawn the broker; returns at once (see `healthy` and `wait_healthy`). A cluster's nodes are
        started by :func:`start_nodes`, which hands each the cluster's id."""
        if self.running():
            return
        host, _ = self.host_port
        java, cp = self._java(), self._classpath()
        require_free_ports(self.name, host, self.ports)
        self.write_config()
        self.format_storage(cluster_id)
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

    def admin(self, own: bool = False) -> AdminClient:
        """An admin client of the whole cluster, or of this node alone with `own`."""
        bootstrap = self.address if own else self.settings.bootstrap_servers
        return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "log_level": 4})

    def healthy(self) -> bool:
        """The node answers on its own address and is a registered broker of the cluster."""
        host, port = self.host_port
        if not port_open(host, port):
            return False
        try:
            meta = self.admin(own=self.settings.nodes > 1).list_topics(timeout=2)
        except KafkaException:
            return False
        if self.settings.nodes == 1:
            return len(meta.brokers) >= 1
        return self.node_id in meta.brokers

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
        brokers = self.settings.nodes
        new = [
            NewTopic(
                spec.name.value,
                num_partitions=spec.partitions,
                replication_factor=replication(brokers).factor,
                config=spec.config(brokers),
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

    @staticmethod
    def _describe(admin: AdminClient, resources: list[ConfigResource], timeout_s: float = 30.0) -> dict:
        """Each topic's configuration. On a cluster, a broker that has not yet learnt of a topic just
        created answers UNKNOWN_TOPIC_OR_PART (seen with 3 nodes): it is asked again until `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return {res: fut.result() for res, fut in admin.describe_configs(resources).items()}
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _check_topics(self, admin: AdminClient, specs: dict) -> None:
        meta = self._wait_for_metadata(admin, [spec.name.value for spec in specs.values()])
        factor = replication(self.settings.nodes).factor
        for spec in specs.values():
            spec: TopicSpec
            have = len(meta[spec.name.value].partitions)
            if have != spec.partitions:
                raise StackError(
                    f"topic {spec.name.value} has {have} partitions but the contract says {spec.partitions}; "
                    "partitions can only grow: fix common/contract.py or recreate the topic."
                )
            copies = min(len(p.replicas) for p in meta[spec.name.value].partitions.values())
            if copies < factor:
                raise StackError(
                    f"topic {spec.name.value} has {copies} replica(s) per partition but the contract asks "
                    f"{factor} on {self.settings.nodes} brokers: recreate it (or reassign its partitions)."
                )
        resources = [ConfigResource(ConfigResource.Type.TOPIC, spec.name.value) for spec in specs.values()]
        for res, configs in self._describe(admin, resources).items():
            spec = next(s for s in specs.values() if s.name.value == res.name)
            want = spec.config(self.settings.nodes)
            drift = {k: v for k, v in want.items() if k in configs and configs[k].value != v}
            if drift:
                entries = [
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in drift.items()
                ]
                alter = ConfigResource(ConfigResource.Type.TOPIC, res.name, incremental_configs=entries)
                admin.incremental_alter_configs([alter])[alter].result()


def cluster_nodes(settings: KafkaSettings, state_dir: Path, jars_dir: Path | None = None) -> list[Kafka]:
    """Every node devstack runs for these settings, node 1 first."""
    return [Kafka(settings, state_dir, jars_dir, node_id=i) for i in range(1, settings.nodes + 1)]


def start_nodes(nodes: list[Kafka]) -> None:
    """Spawn every node that is not running; a cluster's nodes all get one cluster id (the one already
    formatted into a node's storage, else a new one)."""
    if len(nodes) == 1:
        nodes[0].start()
        return
    ids = {cid for node in nodes if (cid := node.cluster_id())}
    if len(ids) > 1:
        raise StackError(
            f"the Kafka nodes' storage belongs to different clusters ({', '.join(sorted(ids))}): "
            "move the nodes' data folders away or run `make clean-state`."
        )
    cluster_id = ids.pop() if ids else new_cluster_id()
    for node in nodes:
        node.start(cluster_id)


def stop_nodes(nodes: list[Kafka]) -> list[str]:
    """Stop every node at once; returns the names of those that were running. One by one, the last
    ones would wait out their stop timeout for a controller quorum that already left."""
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        stopped = list(pool.map(lambda node: node.stop(), nodes))
    return [node.name for node, was in zip(nodes, stopped, strict=True) if was]


@dataclass
class ClusterHealth:
    """What `status` shows of the cluster: brokers registered, partitions led by each broker, and
    partitions with fewer in-sync replicas than replicas (under-replicated) or without a leader."""

    brokers: list[int]
    leaders: dict[int, int]
    under_replicated: int
    offline: int


def cluster_health(settings: KafkaSettings, timeout_s: float = 3.0) -> ClusterHealth | None:
    """One metadata request to the cluster; None when no broker answers."""
    admin = AdminClient(
        {"bootstrap.servers": settings.bootstrap_servers, "socket.timeout.ms": 2000, "log_level": 0}
    )
    try:
        meta = admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return None
    leaders: dict[int, int] = dict.fromkeys(sorted(meta.brokers), 0)
    under, offline = 0, 0
    for topic in meta.topics.values():
        for part in topic.partitions.values():
            if part.leader < 0:
                offline += 1
            else:
                leaders[part.leader] = leaders.get(part.leader, 0) + 1
            if len(part.isrs) < len(part.replicas):
                under += 1
    return ClusterHealth(sorted(meta.brokers), leaders, under, offline)
