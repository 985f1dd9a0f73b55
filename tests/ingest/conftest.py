"""Fixtures of the ingest tests: private topics on the shared broker, settings, a Kafka reader."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from common.contract import TOPICS, Topic
from ingest.settings import IngestSettings
from tests.conftest import consume_from, end_offsets


def create_topics(bootstrap: str, prefix: str, suffixes: dict[Topic, str] | None = None) -> dict[Topic, str]:
    """Topics named `<prefix>.<contract name>` (or `<prefix>.<suffix>` with `suffixes`), with the
    contract's partitions and config; returns once every partition has a leader."""
    names = {t: f"{prefix}.{(suffixes or {}).get(t, t.value)}" for t in Topic}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(names[t], TOPICS[t].partitions, 1, config=TOPICS[t].config()) for t in Topic]
    for fut in admin.create_topics(new, operation_timeout=30).values():
        fut.result()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until every partition has a leader
        meta = admin.list_topics(timeout=10).topics
        ready = all(
            n in meta
            and len(meta[n].partitions) == TOPICS[t].partitions
            and all(p.leader >= 0 for p in meta[n].partitions.values())
            for t, n in names.items()
        )
        if ready:
            return names
        time.sleep(0.2)
    raise RuntimeError(f"topics {names} did not become ready")


def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(Exception):  # already gone is fine
            fut.result()


@pytest.fixture(scope="session")
def own_topics(bootstrap_servers) -> Iterator[dict[Topic, str]]:
    """This test session's own ticks / bars / dead-letter topics (deleted at the end)."""
    names = create_topics(bootstrap_servers, f"ingest-test-{uuid.uuid4().hex[:8]}")
    yield names
    delete_topics(bootstrap_servers, list(names.values()))


@pytest.fixture
def settings() -> IngestSettings:
    return IngestSettings(metrics_port=0)


def _settled_end_offsets(
    bootstrap: str, topic: str, partitions: int, timeout_s: float = 30
) -> dict[int, int]:
    """End offsets of every partition, retried while a new topic's leaders are still being elected."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            offsets = end_offsets(bootstrap, topic)
            if len(offsets) == partitions:
                return offsets
        except KafkaException:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


class Reader:
    """Remembers the end offsets of topics, then reads what was written after them."""

    def __init__(self, bootstrap: str, topics: dict[Topic, str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.start = {
            t: _settled_end_offsets(bootstrap, name, TOPICS[t].partitions) for t, name in topics.items()
        }

    def read(self, topic: Topic, count: int, timeout_s: float = 30) -> list[dict]:
        msgs = consume_from(self.bootstrap, self.topics[topic], self.start[topic], count, timeout_s)
        return [json.loads(m.value()) | {"_key": (m.key() or b"").decode()} for m in msgs]


@pytest.fixture
def reader(bootstrap_servers, own_topics) -> Reader:
    return Reader(bootstrap_servers, own_topics)
