"""Fixtures shared by every test: the real local stack (PostgreSQL, Kafka, Prometheus) on loopback.

`make test` starts the stack before pytest; the `stack` fixture starts it too when pytest is run by
hand, so a test never talks to a mock.
"""

from __future__ import annotations

import random
import socket
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from common.settings import kafka_settings
from devstack import stack as devstack


@pytest.fixture(scope="session")
def stack() -> None:
    """The local services, started if needed (idempotent and fast when already up)."""
    devstack.up()


@pytest.fixture(scope="session")
def bootstrap_servers(stack) -> str:
    return kafka_settings().bootstrap_servers


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """High watermark of every partition of `topic`: where a test's own records will start."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        }
    finally:
        consumer.close()


def consume_from(bootstrap: str, topic: str, start: dict[int, int], until_count: int, timeout_s: float = 30):
    """Read records of `topic` written after `start` (from `end_offsets`) until `until_count` or timeout."""
    import time

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(topic, p, off) for p, off in start.items()])
    records = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < until_count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise RuntimeError(msg.error().str())
            records.append(msg)
    finally:
        consumer.close()
    return records


@pytest.fixture
def unique_symbol() -> str:
    """A symbol no other test uses, so tests can share the contract topics and tables."""
    return "T" + uuid.uuid4().hex[:8].upper()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(n: int) -> list[int]:
    """`n` loopback ports that are free now and that the kernel never hands to outgoing sockets.

    Ports from bind(0) come from the ephemeral range, where any outgoing connection may take one
    between the test picking it and a server (re)binding it.
    """
    low, high = _ephemeral_range()
    candidates = [p for p in range(20_000, 32_000) if not low <= p <= high]
    random.SystemRandom().shuffle(candidates)
    ports: list[int] = []
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError("no free loopback ports below the ephemeral range")
