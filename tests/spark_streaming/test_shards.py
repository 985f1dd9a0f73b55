"""The shard rule (spark_streaming/shards.py): partitions, query names, checkpoints, ports (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.contract import TOPICS, Topic
from spark_streaming.settings import StreamingSettings
from spark_streaming.shards import ShardingError, assignment, shard_settings, source_option

CONTRACT = {t.value: spec.partitions for t, spec in TOPICS.items()}


def _settings(**over) -> StreamingSettings:
    base = {"query_name": "market_stream", "checkpoint_dir": Path("/ck/market_stream"), "metrics_port": 9109}
    return StreamingSettings(**{**base, **over})


@given(
    partitions=st.dictionaries(st.sampled_from("abcde"), st.integers(1, 64), min_size=1),
    shards=st.integers(1, 64),
)
def test_the_shards_read_every_partition_of_every_topic_exactly_once(partitions, shards):
    if shards > max(partitions.values()):
        with pytest.raises(ShardingError):
            assignment(partitions, shards, 0)
        return
    seen = [(t, p) for i in range(shards) for t, ps in assignment(partitions, shards, i).items() for p in ps]
    assert sorted(seen) == sorted((t, p) for t, n in partitions.items() for p in range(n))
    assert all(assignment(partitions, shards, i) for i in range(shards))  # no shard reads nothing


def test_two_shards_split_the_contract_topics_by_partition_parity():
    assert assignment(CONTRACT, 2, 0) == {
        Topic.TICKS.value: [0, 2, 4],
        Topic.BARS.value: [0, 2],
        Topic.DEADLETTER.value: [0],
    }
    assert assignment(CONTRACT, 2, 1) == {Topic.TICKS.value: [1, 3, 5], Topic.BARS.value: [1]}


def test_more_shards_than_the_largest_topic_has_partitions_is_refused():
    most = max(CONTRACT.values())
    assert assignment(CONTRACT, most, most - 1) == {Topic.TICKS.value: [most - 1]}
    with pytest.raises(ShardingError, match=f"{most + 1} shards"):
        assignment(CONTRACT, most + 1, 0)
    with pytest.raises(ShardingError, match=r"shard must be in 0\.\.1"):
        assignment(CONTRACT, 2, 2)


def test_one_shard_subscribes_under_the_configured_name_checkpoint_and_port():
    s = _settings()
    assert shard_settings(s) is s
    assert source_option(s) == ("subscribe", "market.ticks.v1,market.bars.v1,market.deadletter.v1")


def test_a_shard_assigns_its_partitions_and_has_its_own_name_checkpoint_and_port():
    s = shard_settings(_settings(shards=2, shard=1, ticks_topic="t", bars_topic="b", deadletter_topic="d"))
    assert (s.query_name, s.checkpoint_dir, s.metrics_port) == (
        "market_stream-s1of2",
        Path("/ck/market_stream-s1of2"),
        9209,
    )
    option, value = source_option(s)
    assert option == "assign" and json.loads(value) == {"t": [1, 3, 5], "b": [1]}
    assert shard_settings(_settings(shards=3, metrics_port=0), 2).metrics_port == 0  # 0 stays disabled


def test_several_shards_need_a_shard_index_in_range():
    with pytest.raises(ShardingError, match="needs STREAM_SHARD"):
        shard_settings(_settings(shards=2))
    with pytest.raises(ShardingError):
        shard_settings(_settings(shards=2, shard=2))
    with pytest.raises(ShardingError):
        shard_settings(_settings(shard=1))
