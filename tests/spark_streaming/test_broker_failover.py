"""A private 3-node Kafka cluster from `devstack up` (KAFKA_NODES=3 on a private stack), started once
for two tests in order:

1. `devstack up` gives a replicated cluster that `status` and Prometheus see: three KRaft nodes, the
   contract's topics with 3 replicas and min.insync.replicas 2, `status` showing each broker healthy and
   no under-replicated partition, Prometheus scraping every broker's JMX exporter.
2. The cluster loses the broker that leads the most partitions of the ticks topic (kill -9) while the
   real ingest CLI (synthetic source) and the streaming job run against it; the broker comes back
   later, and ingest writes on until it is in every ISR again (and 5 s more: the feed is as long as
   the failure needs, then SIGTERM). Nobody restarts anything: every record ingest accepted is in
   Kafka once, every Kafka offset is in raw.ticks or raw.dead_letters exactly once, and writes resumed
   while the broker was still dead. Prints the time from the broker's death to the first record
   accepted again (goal: under 10 s).

At the end `devstack down` stops every node (checked: no node healthy by `status` afterwards).
The brokers run with the C1 compiler only and 256 MB heaps, on ports outside the kernel's ephemeral
range, with the private stack's state (its own PostgreSQL server and Prometheus too) under a folder of
the test's, removed at the end. The streaming job lands in a private database of the shared stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import psutil
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, OffsetSpec

from common.contract import TOPICS, Topic, replication
from common.migrate import drop_database
from common.settings import PROJECT_ROOT, KafkaSettings
from devstack.kafka import Kafka, cluster_health, cluster_nodes
from devstack.process import port_open, wait_until
from ingest.sources.synthetic import SyntheticSource
from tests.conftest import free_ports
from tests.foundation.private_stack import devstack, private_env
from tests.spark_streaming.helpers import JobProcess, free_port_runs, private_database, query, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.stack]

RATE, SYMBOLS, SEED = 400, 20, 13
FEED_AFTER_REJOIN_S = 30.0  # at most this long for every partition to take records once every ISR is full
# again; then ingest stops (SIGTERM)
MAX_FEED_S = 600.0  # its --duration: only a bound
HOLD_DOWN_S = 25.0  # how long the killed broker stays dead
FAILOVER_GOAL_S = 10.0
JVM_OPTIONS = "-XX:TieredStopAtLevel=1"  # about half a broker's start time on 2 cores
TICKS = Topic.TICKS.value


NODES = ("kafka-1", "kafka-2", "kafka-3")


@dataclass
class Cluster:
    env: dict[str, str]  # the private stack's environment, for `devstack`
    settings: KafkaSettings
    nodes: list[Kafka]


def _states(output: str) -> dict[str, str]:
    """Each Kafka node's state in `devstack status`'s table."""
    states = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 4 and cells[0] in NODES:
            states[cells[0]] = cells[3]
    return states


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    controller, jmx = free_port_runs(2, 3)
    brokers = ",".join(f"127.0.0.1:{p}" for p in free_ports(3))
    state = tmp_path_factory.mktemp("failover") / "state"
    env = private_env(
        state,
        KAFKA_NODES="3",
        KAFKA_NODE_PORT_STEP="1",
        KAFKA_BOOTSTRAP_SERVERS=brokers,
        KAFKA_CONTROLLER_PORT=str(controller),
        KAFKA_JMX_EXPORTER_PORT=str(jmx),
        JAVA_TOOL_OPTIONS=JVM_OPTIONS,
    )
    settings = KafkaSettings(
        bootstrap_servers=brokers,
        controller_port=controller,
        jmx_exporter_port=jmx,
        node_port_step=1,
        nodes=3,
        heap=env["KAFKA_HEAP"],
    )
    nodes = cluster_nodes(settings, state)  # devstack's own nodes: the failover test kills and starts one
    down = None
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("JAVA_TOOL_OPTIONS", JVM_OPTIONS)  # read by a broker JVM the failover test restarts
            result = devstack(env, "up", timeout=400)
            assert result.returncode == 0, result.stderr + result.stdout
            yield Cluster(env, settings, nodes)
        for node in nodes:  # one this process started again (the failover test's) is its child: reaped
            pid = node.pid()  # as it exits, or `down` would wait for its zombie
            with contextlib.suppress(psutil.NoSuchProcess):
                if pid is not None and psutil.Process(pid).ppid() == os.getpid():
                    threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True).start()
        started = time.monotonic()
        down = devstack(env, "down", timeout=300)
        print(f"\ndown of the private stack with 3 Kafka nodes: {time.monotonic() - started:.1f} s")
        assert down.returncode == 0, down.stderr
        assert not any(_states(devstack(env, "status").stdout).get(n) == "healthy" for n in NODES)
    finally:
        if down is None:
            devstack(env, "down", timeout=300)
        for node in nodes:  # whatever `down` left: the state is thrown away
            pid = node.pid()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(state, ignore_errors=True)


def _kafka_targets(prometheus_port: str) -> list[dict]:
    url = f"http://127.0.0.1:{prometheus_port}/api/v1/targets"
    with urllib.request.urlopen(url, timeout=5) as resp:
        active = json.load(resp)["data"]["activeTargets"]
    return [t for t in active if t["labels"]["job"] == "kafka"]


def test_up_with_three_kafka_nodes_gives_a_replicated_cluster_that_status_and_prometheus_see(cluster):
    env, settings = cluster.env, cluster.settings
    status = devstack(env, "status")
    assert _states(status.stdout) == dict.fromkeys(NODES, "healthy"), status.stdout
    summary = " ".join(status.stdout.split())
    assert "kafka brokers 1, 2, 3;" in summary and "under-replicated partitions: 0;" in summary, summary

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    meta = admin.list_topics(timeout=10).topics
    for spec in TOPICS.values():
        partitions = meta[spec.name.value].partitions.values()
        assert len(partitions) == spec.partitions
        assert {len(p.replicas) for p in partitions} == {3}
        assert {len(p.isrs) for p in partitions} == {3}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name.value) for s in TOPICS.values()]
    for fut in admin.describe_configs(resources).values():
        assert fut.result()["min.insync.replicas"].value == "2"

    def all_up() -> bool:
        targets = _kafka_targets(env["PROMETHEUS_PORT"])
        return len(targets) == 3 and all(t["health"] == "up" for t in targets)

    wait_for(all_up, 60, "Prometheus to scrape the three brokers")
    targets = _kafka_targets(env["PROMETHEUS_PORT"])
    assert sorted(t["labels"]["instance"] for t in targets) == [
        f"127.0.0.1:{settings.jmx_exporter_port + i}" for i in range(3)
    ], targets
    assert all(t["health"] == "up" for t in targets), targets


@dataclass
class HighWatermarks:
    """Samples the ticks topic's high watermarks (what acks=all acknowledged) every 100 ms in a thread."""

    bootstrap: str
    partitions: int
    samples: list[tuple[float, dict[int, int]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        self._thread = threading.Thread(target=self._run, name="watermarks", daemon=True)
        self._thread.start()

    def read(self) -> dict[int, int]:
        """The partitions whose leader answered within a second. An admin client that kept a dead
        leader in its metadata answers -1001 for that partition for good: a new one is made then."""
        wanted = {TopicPartition(TICKS, p): OffsetSpec.latest() for p in range(self.partitions)}
        out = {}
        for tp, fut in self._admin.list_offsets(wanted, request_timeout=1).items():
            with contextlib.suppress(KafkaException):
                out[tp.partition] = fut.result().offset
        out = {p: offset for p, offset in out.items() if offset >= 0}
        if len(out) < self.partitions:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            # a request refused as a whole while leaders move: sample again
            with contextlib.suppress(Exception):
                self.samples.append((time.monotonic(), self.read()))
            self._stop.wait(0.1)

    def latest(self) -> dict[int, int]:
        return self.samples[-1][1] if self.samples else {}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def first_advance(self, since: float, baseline: dict[int, int], partitions: set[int]) -> float | None:
        """When every partition of `partitions` was first seen above `baseline` after `since`."""
        pending = set(partitions)
        for at, marks in self.samples:
            if at < since:
                continue
            pending -= {p for p in pending if marks.get(p, -1) > baseline[p]}
            if not pending:
                return at
        return None


def _ticks_leaders(bootstrap: str) -> dict[int, int]:
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(TICKS, timeout=10)
    return {p: part.leader for p, part in meta.topics[TICKS].partitions.items()}


def _read_topic(bootstrap: str, ends: dict[int, int]) -> list:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"failover-{uuid.uuid4()}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(TICKS, p, 0) for p in ends])
    out, deadline = [], time.monotonic() + 120
    try:
        while len(out) < sum(ends.values()) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert not msg.error(), msg.error()
            out.append(msg)
    finally:
        consumer.close()
    return out


def test_killing_the_busiest_broker_loses_and_duplicates_nothing_and_writes_resume(cluster, tmp_path):
    settings, nodes = cluster.settings, cluster.nodes
    bootstrap = settings.bootstrap_servers
    partitions = TOPICS[Topic.TICKS].partitions
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(TICKS, timeout=10).topics[TICKS]
    assert {len(p.replicas) for p in meta.partitions.values()} == {replication(3).factor}

    tag = uuid.uuid4().hex[:6]
    pg = private_database(f"test_failover_{tag}")
    job = JobProcess(tmp_path, {t: t.value for t in Topic}, pg)
    job.env.pop("JAVA_TOOL_OPTIONS", None)  # the job's JVM keeps its full compiler
    job.env.update({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_NODES": "3"})
    env = {k: v for k, v in os.environ.items() if k != "JAVA_TOOL_OPTIONS"}
    env.update({"PYTHONPATH": str(PROJECT_ROOT), "INGEST_SPILL_DIR": str(tmp_path / "spill")})
    ingest_log = tmp_path / "ingest.log"
    marks = HighWatermarks(bootstrap, partitions)
    ingest = None
    try:
        job.start()
        wait_for(lambda: (tmp_path / "checkpoint" / "metadata").exists(), 180, "the query to start")
        with open(ingest_log, "wb") as log:
            ingest = subprocess.Popen(
                [
                    sys.executable, "-m", "ingest", "synthetic",
                    "--rate", str(RATE), "--duration", str(MAX_FEED_S), "--symbols", str(SYMBOLS),
                    "--seed", str(SEED), "--bootstrap", bootstrap, "--metrics-port", "0",
                ],
                cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        fed_from = time.monotonic()
        # records flow into every partition and the job lands them before the fault
        wait_for(lambda: sum(marks.latest().values()) >= RATE * 8, 60, "ingest to write 8 s of ticks")
        wait_for(lambda: query(pg, "select count(*) from raw.ticks")[0][0] > 0, 120, "the job to land ticks")

        leaders = _ticks_leaders(bootstrap)
        busiest = Counter(leaders.values()).most_common(1)[0][0]
        victim: Kafka = next(n for n in nodes if n.node_id == busiest)
        led = {p for p, leader in leaders.items() if leader == busiest}
        at_death = marks.read()
        assert len(at_death) == partitions, at_death
        os.kill(victim.pid(), signal.SIGKILL)
        died = time.monotonic()
        # the fault hit: the broker is gone, and the cluster sees it fenced with partitions under-replicated
        assert wait_until(lambda: not port_open(*victim.host_port), 10)
        fenced = []
        assert wait_until(
            lambda: (
                (h := cluster_health(settings)) is not None
                and busiest not in h.brokers
                and h.under_replicated > 0
                and not fenced.append(h)
            ),
            60,
        ), "the cluster never saw the broker go"
        # every partition, those the dead broker led included, takes records again while it is dead
        assert wait_until(
            lambda: marks.first_advance(died, at_death, set(range(partitions))) is not None,
            HOLD_DOWN_S,
        ), f"partitions did not take records again within {HOLD_DOWN_S} s of the death of broker {busiest}"
        # records the dead broker had already replicated may still be acknowledged just after its death:
        # the failover time is when every partition, those it led included, has taken new records
        resumed = marks.first_advance(died, at_death, set(range(partitions))) - died
        resumed_led = marks.first_advance(died, at_death, led) - died
        new_leaders = _ticks_leaders(bootstrap)
        assert all(new_leaders[p] not in (busiest, -1) for p in led), new_leaders
        assert not victim.running()
        time.sleep(max(0.0, died + HOLD_DOWN_S - time.monotonic()))

        restarted = time.monotonic()
        victim.start()  # the same storage: it catches up from the others and rejoins every ISR
        assert wait_until(victim.healthy, 180), victim.failure_hint()
        back = time.monotonic() - restarted
        assert wait_until(lambda: (h := cluster_health(settings)) and h.under_replicated == 0, 180)
        rejoined = time.monotonic() - restarted

        # writes go on with the broker back in every ISR: every partition takes new records
        at_rejoin, since = marks.read(), time.monotonic()
        wait_for(
            lambda: marks.first_advance(since, at_rejoin, set(at_rejoin)) is not None,
            FEED_AFTER_REJOIN_S,
            "every partition to take records after the rejoin",
            interval_s=0.2,
        )
        assert ingest.poll() is None, ingest_log.read_text()[-3000:]  # it wrote throughout
        fed = time.monotonic() - fed_from
        os.killpg(ingest.pid, signal.SIGTERM)  # its producer flushes, the CLI reports its counts
        assert ingest.wait(60) == 0, ingest_log.read_text()[-3000:]
        ingest_out = ingest_log.read_text()
        accepted = int(re.search(r"accepted\s+(\d+)", ingest_out).group(1))
        dead_lettered = int(re.search(r"dead-lettered\s+(\d+)", ingest_out).group(1))
        assert "unacknowledged" not in ingest_out, ingest_out[-3000:]
        assert dead_lettered == 0 and accepted > RATE * fed * 0.5, ingest_out[-3000:]

        # every record ingest accepted is in Kafka once, in its order: prices depend only on the seed
        ends = marks.read()
        assert wait_until(lambda: len(ends) == partitions or bool(ends.update(marks.read())), 30), ends
        assert sum(ends.values()) == accepted, (ends, accepted)
        got = _read_topic(bootstrap, ends)
        assert len(got) == accepted
        by_symbol: dict[str, list[float]] = defaultdict(list)
        for msg in sorted(got, key=lambda m: (m.partition(), m.offset())):
            by_symbol[msg.key().decode()].append(float(msg.value().split(b'"price":')[1].split(b",")[0]))
        expected: dict[str, list[float]] = defaultdict(list)
        for raw in SyntheticSource(
            SYMBOLS, rate=RATE, seed=SEED, count=accepted, paced=False, start_ms=0
        ).records():
            expected[raw.value["symbol"]].append(round(raw.value["price"], 2))
        assert by_symbol == expected

        # every Kafka offset is in raw.ticks or raw.dead_letters exactly once; the job ran throughout
        def landed() -> Counter:
            rows = query(
                pg,
                "select kafka_partition, kafka_offset from raw.ticks union all "
                "select kafka_partition, kafka_offset from raw.dead_letters where kafka_topic = %s",
                (TICKS,),
            )
            return Counter(map(tuple, rows))

        wait_for(lambda: sum(landed().values()) >= accepted, 300, "the job to land every offset")
        counts = landed()
        wanted = {(p, o) for p, end in ends.items() for o in range(end)}
        assert set(counts) == wanted and set(counts.values()) == {1}
        assert job.alive()
        restarts = job.log_path.read_text(errors="replace").count("event=query_restarting")
        print(
            f"\nbroker {busiest} (leader of ticks partitions {sorted(led)} of {partitions}) killed -9, "
            f"held down {HOLD_DOWN_S:.0f} s: every partition accepted records again {resumed:.2f} s "
            f"after its death ({resumed_led:.2f} s for those it led); "
            f"{fenced[0].under_replicated} partitions under-replicated while it was down; restarted, "
            f"healthy after {back:.1f} s, every ISR full after {rejoined:.1f} s; ingest accepted "
            f"{accepted} records in {fed:.0f} s, each in Kafka once and landed once; the streaming query "
            f"restarted itself {restarts} time(s)"
        )
        assert resumed < FAILOVER_GOAL_S
    finally:
        marks.close()
        if ingest is not None and ingest.poll() is None:
            os.killpg(ingest.pid, signal.SIGKILL)
            ingest.wait(30)
        job.stop()
        drop_database(pg)
