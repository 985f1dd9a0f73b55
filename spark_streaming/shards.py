"""Sharding the streaming job (issue 13): shard *i* of *N* reads the partitions *p* with *p* % *N* == *i*
of each of its three topics, with its own query name, checkpoint folder and metrics port.

Ingest keys ticks by symbol, so a symbol lives in one partition and so in one shard: a shard's state
(open bars, indicator state, watermark: the sink's rows keyed by the query id, which comes from the
shard's own checkpoint) is complete for its symbols. With N = 1 nothing changes: the job subscribes to
the topics under the configured query name and checkpoint folder, so existing checkpoints keep working.

Pure: no Spark, no Kafka; the partition counts come from the contract (:data:`common.contract.TOPICS`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from common.contract import TOPICS, Topic
from spark_streaming.settings import StreamingSettings


class ShardingError(ValueError):
    """A shard count or index that cannot give every shard a Kafka partition."""


def assignment(partitions: Mapping[str, int], shards: int, shard: int) -> dict[str, list[int]]:
    """The partitions of each topic that shard `shard` of `shards` reads: p % shards == shard. A topic
    of which the shard gets no partition is left out (the dead-letter topic has 1 partition: shard 0's)."""
    if shards < 1:
        raise ShardingError(f"shards must be at least 1, got {shards}")
    if not 0 <= shard < shards:
        raise ShardingError(f"shard must be in 0..{shards - 1}, got {shard}")
    most = max(partitions.values(), default=0)
    if shards > most:
        raise ShardingError(
            f"{shards} shards but the largest topic has {most} partitions: shard {most} on would read nothing"
        )
    out = {t: [p for p in range(n) if p % shards == shard] for t, n in partitions.items()}
    return {t: ps for t, ps in out.items() if ps}


def topic_partitions(s: StreamingSettings) -> dict[str, int]:
    """The job's three topics (their configured names) with the contract's partition counts."""
    return {
        s.ticks_topic: TOPICS[Topic.TICKS].partitions,
        s.bars_topic: TOPICS[Topic.BARS].partitions,
        s.deadletter_topic: TOPICS[Topic.DEADLETTER].partitions,
    }


def suffix(shards: int, shard: int) -> str:
    """What a shard adds to the query name and checkpoint folder: nothing for 1 shard, else -s<i>of<N>."""
    return "" if shards == 1 else f"-s{shard}of{shards}"


def source_option(s: StreamingSettings) -> tuple[str, str]:
    """The Kafka source option that picks the shard's input: `subscribe` to the three topics with one
    shard (as before sharding), else `assign` with the shard's partitions (JSON)."""
    topics = topic_partitions(s)
    if s.shards == 1:
        return "subscribe", ",".join(topics)
    return "assign", json.dumps(assignment(topics, s.shards, s.shard or 0), separators=(",", ":"))


def shard_settings(s: StreamingSettings, shard: int | None = None) -> StreamingSettings:
    """The settings one shard's query runs with (`shard` or `s.shard`): query name and checkpoint folder
    with the shard's suffix, metrics port `metrics_port + shard * shard_port_step` (0 stays 0). With one
    shard, `s` itself. Apply once: the returned settings keep `shards` and name the shard in `shard`."""
    i = s.shard if shard is None else shard
    if s.shards == 1:
        assignment(topic_partitions(s), 1, i or 0)  # validates the index
        return s
    if i is None:
        raise ShardingError(f"STREAM_SHARDS={s.shards} needs STREAM_SHARD (0..{s.shards - 1})")
    assignment(topic_partitions(s), s.shards, i)  # validates count and index
    tail = suffix(s.shards, i)
    checkpoint: Path = s.checkpoint_dir
    return s.model_copy(
        update={
            "shard": i,
            "query_name": s.query_name + tail,
            "checkpoint_dir": checkpoint.with_name(checkpoint.name + tail),
            "metrics_port": s.metrics_port + i * s.shard_port_step if s.metrics_port else 0,
        }
    )
