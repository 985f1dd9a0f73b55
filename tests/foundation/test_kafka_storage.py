"""Formatting KRaft storage with the broker's own storage tool, from the jars in the state folder."""

from __future__ import annotations

import uuid

from common.settings import KafkaSettings
from devstack import kafka
from devstack.kafka import Kafka, new_cluster_id

# 0xF8 as the first byte encodes to "-" as the first base64url character
DASH_FIRST = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
PLAIN = uuid.UUID(bytes=bytes([0x10]) + bytes(15))


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    draws = iter([DASH_FIRST, DASH_FIRST, PLAIN])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))

    cluster_id = new_cluster_id()

    assert cluster_id == "EAAAAAAAAAAAAAAAAAAAAA"
    assert next(draws, None) is None


def test_the_storage_tool_formats_with_the_id_a_dash_first_draw_is_replaced_by(tmp_path, monkeypatch):
    draws = iter([DASH_FIRST, PLAIN])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    broker = Kafka(KafkaSettings(bootstrap_servers="127.0.0.1:1", controller_port=2), tmp_path)
    broker.write_config()

    assert broker.format_storage() is True

    meta = (broker.log_dir / "meta.properties").read_text()
    assert "cluster.id=EAAAAAAAAAAAAAAAAAAAAA" in meta
    assert broker.format_storage() is False
