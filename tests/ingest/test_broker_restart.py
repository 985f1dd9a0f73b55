"""A private Kafka broker is restarted in the middle of a synthetic run: afterwards every record the
run produced is in Kafka exactly once (idempotent producer, acks=all, retries until delivered)."""

from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, TopicPartition

from common.contract import Topic
from common.settings import KafkaSettings, stack_settings
from devstack.kafka import Kafka
from devstack.process import wait_until
from ingest.service import produce_synthetic
from ingest.sources.synthetic import SyntheticSource
from tests.ingest.conftest import create_topics

RATE, SYMBOLS, SEED = 3_000, 30, 77


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def private_kafka(tmp_path):
    port, controller, jmx = _free_ports(3)
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
        assert wait_until(kafka.healthy, 90), kafka.failure_hint()
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

    def run() -> None:
        result["stats"] = produce_synthetic(
            RATE,
            duration_s=9,
            symbols=SYMBOLS,
            seed=SEED,
            bootstrap=bootstrap,
            topics=topics,
            settings=settings,
        )

    runner = threading.Thread(target=run)
    runner.start()
    time.sleep(3)
    assert private_kafka.stop()  # the broker goes away mid-run ...
    time.sleep(2)
    private_kafka.start()  # ... and comes back with its log
    assert wait_until(private_kafka.healthy, 90), private_kafka.failure_hint()
    runner.join(timeout=180)
    assert not runner.is_alive()
    stats = result["stats"]
    assert stats.dead_lettered == 0 and stats.accepted > RATE * 5

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
