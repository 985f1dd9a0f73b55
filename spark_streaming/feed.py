"""Put contract messages on Kafka for tests, benchmarks and the demo (confluent-kafka, one producer).

`tick_value` writes the same bytes as ``common.contract.encode(Tick(...))`` without building a pydantic
model per message, so a benchmark can produce tens of thousands of ticks per second with their real
ingest time (a test checks the two encodings are identical).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from common.contract import TOPICS, Topic, message_key, replication


def producer(bootstrap: str, **extra) -> Producer:
    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000,
    }
    conf.update(extra)
    return Producer(conf)


def tick_value(
    symbol: str, event_time_ms: int, price: float, size: float, ingest_time_ms: int, source: str = "synthetic"
) -> bytes:
    """Wire value of a Tick with only the required fields, byte-identical to contract.encode."""
    return (
        f'{{"schema_version":1,"symbol":{json.dumps(symbol)},"event_time_ms":{event_time_ms},'
        f'"price":{price!r},"size":{size!r},"source":"{source}","ingest_time_ms":{ingest_time_ms}}}'
    ).encode()


def send(p: Producer, topic: str, items: Iterable[tuple[str | None, bytes]]) -> int:
    """Produce (symbol, value) pairs, serving callbacks and waiting on a full queue; returns the count."""
    n = 0
    for symbol, value in items:
        while True:
            try:
                p.produce(topic, value=value, key=message_key(symbol))
                break
            except BufferError:
                p.poll(0.05)
        n += 1
        if n % 1000 == 0:
            p.poll(0)
    return n


def create_topics(bootstrap: str, names: dict[Topic, str], timeout_s: float = 30.0, brokers: int = 1) -> None:
    """Create private copies of the contract topics (same partitions and config, replicated as the
    contract says for `brokers` nodes) under other names."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = [
        NewTopic(
            name,
            num_partitions=TOPICS[t].partitions,
            replication_factor=replication(brokers).factor,
            config=TOPICS[t].config(brokers),
        )
        for t, name in names.items()
    ]
    futures = admin.create_topics(wanted, operation_timeout=timeout_s)
    for _name, fut in futures.items():
        try:
            fut.result(timeout=timeout_s)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meta = admin.list_topics(timeout=5)
        if all(n in meta.topics and not meta.topics[n].error for n in names.values()):
            return
        time.sleep(0.2)
    raise TimeoutError(f"topics {list(names.values())} did not appear")


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_topics(list(names), operation_timeout=30).values():
        with contextlib.suppress(Exception):
            fut.result(timeout=30)
