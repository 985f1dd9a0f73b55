"""Kafka on 3 KRaft nodes against 1, in the same run: ingest throughput and broker failover.

Two private clusters on free loopback ports (1 node; 3 nodes with replication factor 3 and
min.insync.replicas 2 from the contract), brokers with 256 MB heaps, state in a temporary folder
removed at the end. Both run at once, so each round measures them under the same machine load:
- throughput: the ingest service's own path (synthetic -> validate -> idempotent acks=all producer)
  unpaced, `count` records per round and cluster, rounds interleaved (1 first in even rounds, 3 first
  in odd ones); each round gives records/s for both and their ratio; figures are medians;
- failover: ingest paced at 2,000 ticks/s into the 3-node cluster, the broker leading the most ticks
  partitions killed -9; the time from its death until every partition took records again (high
  watermarks sampled every 100 ms).
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from common.contract import TOPICS, Topic
from common.settings import KafkaSettings
from devstack.kafka import Kafka, cluster_nodes, start_nodes
from devstack.process import wait_until
from ingest.service import produce_synthetic
from ingest.settings import IngestSettings
from tests.conftest import free_ports
from tests.spark_streaming.helpers import free_port_runs
from tests.spark_streaming.test_broker_failover import HighWatermarks, _ticks_leaders

SYMBOLS = 1_000


def _cluster(nodes: int, state: Path) -> list[Kafka]:
    controller, jmx = free_port_runs(2, nodes)
    settings = KafkaSettings(
        bootstrap_servers=",".join(f"127.0.0.1:{p}" for p in free_ports(nodes)),
        controller_port=controller,
        jmx_exporter_port=jmx,
        node_port_step=1,
        nodes=nodes,
        heap="256m",
    )
    brokers = cluster_nodes(settings, state / f"{nodes}-nodes")
    start_nodes(brokers)
    for broker in brokers:
        if not wait_until(broker.healthy, 180):
            raise RuntimeError(broker.failure_hint())
    brokers[0].ensure_topics()
    return brokers


def _kill(brokers: list[Kafka]) -> None:
    """SIGKILL a private cluster's nodes (their state is thrown away) and wait until they are gone."""
    for broker in brokers:
        if (pid := broker.pid()) is not None:
            os.kill(pid, signal.SIGKILL)
    for broker in brokers:
        wait_until(lambda b=broker: not b.running(), 30)


def _throughput(brokers: list[Kafka], count: int, seed: int, spill: Path) -> float:
    started = time.perf_counter()
    stats = produce_synthetic(
        1_000_000.0,
        count=count,
        symbols=SYMBOLS,
        seed=seed,
        paced=False,
        bootstrap=brokers[0].settings.bootstrap_servers,
        settings=IngestSettings(spill_dir=spill, metrics_port=0),
        flush_timeout_s=120,
    )
    elapsed = time.perf_counter() - started
    if stats.accepted != count:
        raise RuntimeError(f"{stats.accepted} of {count} records accepted")
    return count / elapsed


def _failover(brokers: list[Kafka], spill: Path) -> dict:
    bootstrap = brokers[0].settings.bootstrap_servers
    partitions = TOPICS[Topic.TICKS].partitions
    marks = HighWatermarks(bootstrap, partitions)
    stop = threading.Event()
    runner = threading.Thread(
        target=produce_synthetic,
        args=(2_000.0,),
        kwargs={
            "duration_s": 60,
            "symbols": SYMBOLS,
            "bootstrap": bootstrap,
            "settings": IngestSettings(spill_dir=spill, metrics_port=0),
            "stop": stop,
        },
        daemon=True,
    )
    runner.start()
    try:
        wait_until(lambda: sum(marks.latest().values()) >= 10_000, 60)
        leaders = _ticks_leaders(bootstrap)
        busiest = Counter(leaders.values()).most_common(1)[0][0]
        victim = next(b for b in brokers if b.node_id == busiest)
        at_death = marks.read()
        os.kill(victim.pid(), signal.SIGKILL)
        died = time.monotonic()
        wait_until(lambda: marks.first_advance(died, at_death, set(range(partitions))) is not None, 60)
        every = marks.first_advance(died, at_death, set(range(partitions)))
        led = marks.first_advance(died, at_death, {p for p, b in leaders.items() if b == busiest})
        return {
            "killed_broker": busiest,
            "every_partition_accepting_again_s": round(every - died, 2) if every else None,
            "partitions_it_led_accepting_again_s": round(led - died, 2) if led else None,
            "goal_s": 10.0,
        }
    finally:
        stop.set()
        runner.join(120)
        marks.close()


def run(quick: bool = False) -> dict:
    rounds, count = (2, 50_000) if quick else (5, 200_000)
    state = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    clusters: dict[int, list[Kafka]] = {}
    try:
        for nodes in (1, 3):
            clusters[nodes] = _cluster(nodes, state)
        rates: dict[int, list[float]] = {1: [], 3: []}
        for i in range(rounds):
            for nodes in (1, 3) if i % 2 == 0 else (3, 1):
                rates[nodes].append(_throughput(clusters[nodes], count, seed=i, spill=state / "spill"))
        ratios = [three / one for one, three in zip(rates[1], rates[3], strict=True)]
        result = {
            "records_per_round": count,
            "rounds": rounds,
            "ingest_records_per_s_1_broker": round(statistics.median(rates[1])),
            "ingest_records_per_s_3_brokers": round(statistics.median(rates[3])),
            "ratio_3_to_1_median": round(statistics.median(ratios), 3),
            "ratio_3_to_1_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "failover": _failover(clusters[3], state / "spill"),
        }
        return result
    finally:
        for brokers in clusters.values():
            _kill(brokers)
        shutil.rmtree(state, ignore_errors=True)
