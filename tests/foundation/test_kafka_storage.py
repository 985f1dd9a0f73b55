"""Formatting KRaft storage with the broker's own storage tool, from the jars in the state folder."""

from __future__ import annotations

import uuid

import pytest

from common.settings import KafkaSettings
from devstack.errors import StackError
from devstack.kafka import Kafka, new_cluster_id

# 0xF8 as the first byte encodes to "-" as the first base64url character
DASH_FIRST = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
PLAIN = uuid.UUID(bytes=bytes([0x10]) + bytes(15))


def test_a_cluster_id_never_starts_with_a_dash():
    draws = iter([DASH_FIRST, DASH_FIRST, PLAIN])

    cluster_id = new_cluster_id(draw=lambda: next(draws))

    assert cluster_id == "EAAAAAAAAAAAAAAAAAAAAA"
    assert next(draws, None) is None


def test_the_storage_tool_refuses_a_dash_first_id_and_formats_the_redrawn_one(tmp_path):
    broker = Kafka(KafkaSettings(bootstrap_servers="127.0.0.1:1", controller_port=2), tmp_path)
    broker.write_config()
    dash_first = new_cluster_id(draw=lambda: PLAIN).replace("E", "-", 1)

    # what CI met: the real storage tool reads "-..." as an option and refuses it
    with pytest.raises(StackError, match="formatting Kafka storage failed"):
        broker.format_storage(cluster_id=dash_first)

    draws = iter([DASH_FIRST, PLAIN])
    assert broker.format_storage(cluster_id=new_cluster_id(draw=lambda: next(draws))) is True
    meta = (broker.log_dir / "meta.properties").read_text()
    assert "cluster.id=EAAAAAAAAAAAAAAAAAAAAA" in meta
    assert broker.format_storage() is False
