"""A private Kafka broker is restarted in the middle of a synthetic run: afterwards every record the
run produced is in Kafka exactly once (idempotent producer, acks=all, retries until delivered).

Made to hold on a loaded 2-core machine:
- the broker's ports lie outside the kernel's ephemeral range, so while the broker is down no
  outgoing connection of any process (nor the producer reconnecting to itself) can take one of
  them and stop the broker from binding it again on restart;
- the broker JVM runs with the C1 compiler only (about half the start time of a default JVM);
- the outage is placed by progress, not by sleeps: the broker stops once records are flowing and is
  back before the run ends, which the test checks;
- every wait has a deadline and the run has a stop event, so a failure ends the test instead of
  leaving a producer thread flushing.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, TopicPartition

from common.contract import Topic
from common.settings import KafkaSettings, stack_settings
from devstack.kafka import Kafka
from devstack.process import port_open, wait_until
from ingest.service import produce_synthetic
from ingest.sources.synthetic import SyntheticSource
from tests.conftest import free_ports
from tests.ingest.conftest import create_topics

RATE, SYMBOLS, SEED, DURATION_S = 3_000, 30, 77, 10.0
JVM_OPTIONS = "-XX:TieredStopAtLevel=1"


@pytest.fixture
def private_kafka(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", JVM_OPTIONS)  # read by the broker JVMs this test starts
    port, controller, jmx = free_ports(3)
    (tmp_path / "jars").symlink_to(stack_settings().jars_dir)
    kafka = Kafka(
        KafkaSettings(
            bootstrap_servers=f"127.0.0.1:{port}",
            controller_port=controller,
            jmx_exporter_port=jmx,
            heap="384m",
        ),
        tmp_path,
        name="kafka-ingest-test",
    )
    kafka.start()
    try:
        assert wait_until(kafka.healthy, 120), kafka.failure_hint()
        yield kafka
    finally:
        kafka.stop()


def _read_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"restart-{time.time_ns()}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, deadline, idle = [], time.monotonic() + 60, 0
    try:
        while time.monotonic() < deadline and (len(out) < expected or idle < 4):
            msg = consumer.poll(0.5)
            if msg is None:
                idle += 1
                continue
            idle = 0
            assert not msg.error(), msg.error()
            out.append(msg)
    finally:
        consumer.close()
    return out


@pytest.mark.slow
def test_every_record_is_in_kafka_exactly_once_after_a_broker_restart_mid_run(private_kafka, settings):
    bootstrap = private_kafka.address
    topics = create_topics(bootstrap, "restart")
    result: dict = {}
    progress = [0]
    stop = threading.Event()

    def run() -> None:
        try:
            result["stats"] = produce_synthetic(
                RATE,
                duration_s=DURATION_S,
                symbols=SYMBOLS,
                seed=SEED,
                bootstrap=bootstrap,
                topics=topics,
                settings=settings,
                stop=stop,
                on_progress=lambda n: progress.__setitem__(0, n),
                flush_timeout_s=120,
            )
        except BaseException as exc:  # handed to the test thread
            result["error"] = exc

    runner = threading.Thread(target=run, name="synthetic-run", daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: progress[0] >= RATE, 30), "the run did not start producing"
        at_stop = progress[0]
        assert private_kafka.stop()  # the broker goes away mid-run ...
        assert wait_until(lambda: not port_open(*private_kafka.host_port), 30)
        time.sleep(1.0)
        during_outage = progress[0]
        private_kafka.start()  # ... and comes back with its log
        assert wait_until(private_kafka.healthy, 120), private_kafka.failure_hint()
        runner.join(timeout=240)
        assert not runner.is_alive(), "the run did not finish"
    finally:
        stop.set()
        runner.join(timeout=10)
    assert "error" not in result, result.get("error")
    stats = result["stats"]
    # the outage really was in the middle: records were made while the broker was down, and after
    assert 0 < at_stop < during_outage < stats.accepted
    assert stats.dead_lettered == 0 and stats.accepted > RATE * DURATION_S * 0.5

    got = _read_all(bootstrap, topics[Topic.TICKS], 6, stats.accepted)
    assert len(got) == stats.accepted
    by_symbol: dict[str, list[float]] = defaultdict(list)
    seen = set()
    for msg in sorted(got, key=lambda m: (m.partition(), m.offset())):
        value = msg.value()
        seen.add(value)
        by_symbol[msg.key().decode()].append(float(value.split(b'"price":')[1].split(b",")[0]))
    assert len(seen) == stats.accepted  # no duplicate
    # prices depend only on the seed: regenerate the run's records and compare symbol by symbol, in order
    expected: dict[str, list[float]] = defaultdict(list)
    for raw in SyntheticSource(
        SYMBOLS, rate=RATE, seed=SEED, count=stats.accepted, paced=False, start_ms=0
    ).records():
        expected[raw.value["symbol"]].append(round(raw.value["price"], 2))
    assert by_symbol == expected
