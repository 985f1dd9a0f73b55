"""How a 1- or 3-node KRaft cluster is laid out from KafkaSettings: ports, quorum, replication,
scrape targets. (The cluster itself is started by `devstack up`, checked by `status` and Prometheus,
and a broker killed in tests/spark_streaming/test_broker_failover.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from common.contract import TOPICS, replication
from common.settings import KafkaSettings, PrometheusSettings
from devstack.kafka import cluster_nodes, server_properties
from devstack.prometheus import render_config


def _three(**overrides) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers="127.0.0.1:9092", controller_port=9093, jmx_exporter_port=9404, nodes=3, **overrides
    )


def test_one_node_keeps_the_single_broker_layout():
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:9092", controller_port=9093, jmx_exporter_port=9404)
    (node,) = cluster_nodes(settings, Path("/state"))
    props = server_properties(settings, Path("/data"))
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert node.name == "kafka" and node.ports == [9092, 9093, 9404] and node.address == "127.0.0.1:9092"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert "controller.quorum.voters" not in props and "min.insync.replicas" not in props
    assert props["offsets.topic.replication.factor"] == "1"
    assert TOPICS[next(iter(TOPICS))].config()["min.insync.replicas"] == "1"


def test_three_nodes_get_their_own_ports_folders_and_one_static_quorum():
    settings = _three()
    nodes = cluster_nodes(settings, Path("/state"))
    assert settings.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"
    assert [n.name for n in nodes] == ["kafka-1", "kafka-2", "kafka-3"]
    assert len({n.home for n in nodes}) == 3
    ports = [p for n in nodes for p in n.ports]
    assert len(set(ports)) == 9, ports
    voters = "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293"
    for n in nodes:
        props = server_properties(settings, n.log_dir, n.node_id)
        assert props["node.id"] == str(n.node_id)
        assert props["controller.quorum.voters"] == voters
        assert "controller.quorum.bootstrap.servers" not in props
        assert props["listeners"] == (
            f"PLAINTEXT://127.0.0.1:{n.host_port[1]},CONTROLLER://127.0.0.1:{n.controller_port}"
        )
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert props["min.insync.replicas"] == "2"


def test_an_explicit_bootstrap_list_gives_each_node_its_address():
    settings = KafkaSettings(
        bootstrap_servers="127.0.0.1:21000,127.0.0.1:22000,127.0.0.1:23000",
        controller_port=21001,
        jmx_exporter_port=21002,
        nodes=3,
        node_port_step=7,
    )
    assert [n.ports for n in cluster_nodes(settings, Path("/s"))] == [
        [21000, 21001, 21002],
        [22000, 21008, 21009],
        [23000, 21015, 21016],
    ]


@pytest.mark.parametrize(("brokers", "factor", "min_isr"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)])
def test_replication_follows_the_broker_count(brokers, factor, min_isr):
    rep = replication(brokers)
    assert (rep.factor, rep.min_insync_replicas) == (factor, min_isr)
    for spec in TOPICS.values():
        assert spec.config(brokers)["min.insync.replicas"] == str(min_isr)


def test_prometheus_scrapes_every_brokers_jmx_exporter():
    config = yaml.safe_load(render_config(PrometheusSettings(), _three()))
    (kafka,) = [job for job in config["scrape_configs"] if job["job_name"] == "kafka"]
    assert kafka["static_configs"] == [{"targets": ["127.0.0.1:9404", "127.0.0.1:9504", "127.0.0.1:9604"]}]
