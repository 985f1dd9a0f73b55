"""Every contract topic exists with its partitions and retention and carries bytes unchanged."""

from __future__ import annotations

import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from common.contract import (
    TOPICS,
    Bar,
    DeadLetter,
    RejectReason,
    Stage,
    Tick,
    Topic,
    encode,
    message_key,
)
from tests.conftest import consume_from, end_offsets


def _sample(topic: Topic, symbol: str):
    if topic is Topic.TICKS:
        return Tick(
            symbol=symbol,
            event_time_ms=1_764_000_000_123,
            price=187.25,
            size=100,
            bid=187.2,
            ask=187.3,
            source="synthetic",
            ingest_time_ms=1_764_000_000_200,
        )
    if topic is Topic.BARS:
        return Bar(
            symbol=symbol,
            interval="1m",
            event_time_ms=1_764_000_000_000,
            open=1.5,
            high=2.0,
            low=1.25,
            close=1.75,
            volume=1200,
            source="replay",
            ingest_time_ms=1_764_000_060_000,
        )
    return DeadLetter(
        reason=RejectReason.MALFORMED_JSON,
        detail="expected '}' at byte 12",
        stage=Stage.INGEST,
        source="replay",
        topic=Topic.TICKS.value,
        symbol=symbol,
        payload='{"symbol": "X"',
        failed_at_ms=1_764_000_000_000,
    )


def test_every_contract_topic_exists_with_its_partitions_and_retention(bootstrap_servers):
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    topics = admin.list_topics(timeout=10).topics
    for spec in TOPICS.values():
        assert len(topics[spec.name.value].partitions) == spec.partitions
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name.value) for s in TOPICS.values()]
    for res, fut in admin.describe_configs(resources).items():
        configs = fut.result()
        spec = TOPICS[Topic(res.name)]
        assert configs["retention.ms"].value == str(spec.retention_ms)
        assert configs["cleanup.policy"].value == spec.cleanup_policy


def test_a_message_produced_to_each_contract_topic_is_consumed_back_byte_for_byte(
    bootstrap_servers, unique_symbol
):
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True, "acks": "all"})
    sent = {}
    for topic in Topic:
        start = end_offsets(bootstrap_servers, topic.value)
        value = encode(_sample(topic, unique_symbol))
        headers = [("trace-id", uuid.uuid4().bytes)]
        producer.produce(topic.value, key=message_key(unique_symbol), value=value, headers=headers)
        sent[topic] = (start, value, headers)
    assert producer.flush(30) == 0

    for topic, (start, value, headers) in sent.items():
        mine = [
            m
            for m in consume_from(bootstrap_servers, topic.value, start, until_count=1_000, timeout_s=8)
            if m.key() == message_key(unique_symbol)
        ]
        assert len(mine) == 1, f"{topic}: expected exactly one record, got {len(mine)}"
        assert mine[0].value() == value
        assert mine[0].headers() == headers


def test_same_symbol_always_lands_in_the_same_partition(bootstrap_servers, unique_symbol):
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True})
    partitions = set()

    def on_delivery(err, msg):
        assert err is None
        partitions.add(msg.partition())

    for i in range(20):
        tick = _sample(Topic.TICKS, unique_symbol).model_copy(update={"event_time_ms": 1_764_000_000_000 + i})
        producer.produce(
            Topic.TICKS.value, key=message_key(unique_symbol), value=encode(tick), on_delivery=on_delivery
        )
    producer.flush(30)
    assert len(partitions) == 1
