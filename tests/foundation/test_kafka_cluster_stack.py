"""`devstack up` with KAFKA_NODES=3 on a private stack: three KRaft nodes, the contract's topics with 3
replicas and min.insync.replicas 2, `status` showing each broker and no under-replicated partition,
Prometheus scraping every broker's JMX exporter; `down` stops them all."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from common.contract import TOPICS
from tests.conftest import free_ports
from tests.foundation.private_stack import devstack, private_env
from tests.spark_streaming.helpers import free_port_runs

pytestmark = [pytest.mark.stack, pytest.mark.slow]

NODES = ("kafka-1", "kafka-2", "kafka-3")


def _states(output: str) -> dict[str, str]:
    states = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 4 and cells[0] in NODES:
            states[cells[0]] = cells[3]
    return states


def _kafka_targets(prometheus_port: str) -> list[dict]:
    url = f"http://127.0.0.1:{prometheus_port}/api/v1/targets"
    with urllib.request.urlopen(url, timeout=5) as resp:
        active = json.load(resp)["data"]["activeTargets"]
    return [t for t in active if t["labels"]["job"] == "kafka"]


def test_up_with_three_kafka_nodes_gives_a_replicated_cluster_that_status_and_prometheus_see(tmp_path):
    controller, jmx = free_port_runs(2, 3)
    brokers = ",".join(f"127.0.0.1:{p}" for p in free_ports(3))
    env = private_env(
        tmp_path / "state",
        KAFKA_NODES="3",
        KAFKA_NODE_PORT_STEP="1",
        KAFKA_BOOTSTRAP_SERVERS=brokers,
        KAFKA_CONTROLLER_PORT=str(controller),
        KAFKA_JMX_EXPORTER_PORT=str(jmx),
        JAVA_TOOL_OPTIONS="-XX:TieredStopAtLevel=1",
    )
    try:
        result = devstack(env, "up", timeout=400)
        assert result.returncode == 0, result.stderr + result.stdout

        status = devstack(env, "status")
        assert _states(status.stdout) == dict.fromkeys(NODES, "healthy"), status.stdout
        summary = " ".join(status.stdout.split())
        assert "kafka brokers 1, 2, 3;" in summary and "under-replicated partitions: 0;" in summary, summary

        admin = AdminClient({"bootstrap.servers": brokers})
        meta = admin.list_topics(timeout=10).topics
        for spec in TOPICS.values():
            partitions = meta[spec.name.value].partitions.values()
            assert len(partitions) == spec.partitions
            assert {len(p.replicas) for p in partitions} == {3}
            assert {len(p.isrs) for p in partitions} == {3}
        resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name.value) for s in TOPICS.values()]
        for fut in admin.describe_configs(resources).values():
            assert fut.result()["min.insync.replicas"].value == "2"
        del admin  # it would keep calling the brokers after `down`

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            targets = _kafka_targets(env["PROMETHEUS_PORT"])
            if len(targets) == 3 and all(t["health"] == "up" for t in targets):
                break
            time.sleep(1)
        assert sorted(t["labels"]["instance"] for t in targets) == [
            f"127.0.0.1:{jmx + i}" for i in range(3)
        ], targets
        assert all(t["health"] == "up" for t in targets), targets
    finally:
        started = time.monotonic()
        down = devstack(env, "down", timeout=300)
        print(f"\ndown of the private stack with 3 Kafka nodes: {time.monotonic() - started:.1f} s")
    assert down.returncode == 0, down.stderr
    assert not any(_states(devstack(env, "status").stdout).get(n) == "healthy" for n in NODES)
