"""docker-compose.yml runs the same services, ports and settings as the local stack."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from common.settings import PROJECT_ROOT, KafkaSettings, PostgresSettings, PrometheusSettings
from devstack.kafka import server_properties

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _default(settings_cls, field: str):
    return settings_cls.model_fields[field].default


def _expand_defaults(text: str) -> str:
    """Resolve ${VAR:-default} to its default, as compose does with an empty environment."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


def _flag(args: list[str], name: str) -> str:
    for arg in args:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"--{name} missing in {args}")


@pytest.mark.parametrize("name", ["postgres", "kafka", "prometheus"])
def test_each_core_service_is_there_with_a_health_check(name):
    assert "healthcheck" in SERVICES[name]
    assert SERVICES[name]["network_mode"] == "host", "host networking keeps local addresses identical"


def test_postgres_listens_where_the_local_stack_does():
    command = [_expand_defaults(part) for part in SERVICES["postgres"]["command"]]
    assert f"port={_default(PostgresSettings, 'port')}" in command
    assert f"listen_addresses={_default(PostgresSettings, 'host')}" in command
    env = SERVICES["postgres"]["environment"]
    assert _expand_defaults(env["POSTGRES_DB"]) == _default(PostgresSettings, "database")
    assert _expand_defaults(env["POSTGRES_USER"]) == _default(PostgresSettings, "admin_user")
    assert "PG_ADMIN_PASSWORD" in env["POSTGRES_PASSWORD"], "the password comes from .env"


def test_kafka_container_settings_equal_the_local_broker_properties():
    env = SERVICES["kafka"]["environment"]
    container = {
        key.removeprefix("KAFKA_").lower().replace("_", "."): str(value)
        for key, value in env.items()
        if key.startswith("KAFKA_") and key != "KAFKA_HEAP_OPTS"
    }
    local = server_properties(KafkaSettings.model_construct(), Path("/unused"))  # defaults, not env
    shared = set(local) - {
        "log.dirs",
        "controller.quorum.bootstrap.servers",
        "log.retention.check.interval.ms",
    }
    for key in shared:
        assert container.get(key) == local[key], (
            f"{key}: compose {container.get(key)!r} != local {local[key]!r}"
        )
    controller_port = _default(KafkaSettings, "controller_port")
    assert container["controller.quorum.voters"] == f"1@127.0.0.1:{controller_port}"
    assert f"-Xmx{_default(KafkaSettings, 'heap')}" in env["KAFKA_HEAP_OPTS"]


def test_prometheus_uses_the_project_config_and_every_scrape_target_has_a_service():
    prom = SERVICES["prometheus"]
    assert "./monitoring:/etc/prometheus:ro" in prom["volumes"]
    expected = f"{_default(PrometheusSettings, 'host')}:{_default(PrometheusSettings, 'port')}"
    assert _flag(prom["command"], "web.listen-address") == expected
    config = yaml.safe_load((PROJECT_ROOT / "monitoring" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in config["scrape_configs"]}
    listening = {
        "prometheus": expected,
        "kafka": _flag(SERVICES["kafka-exporter"]["command"], "web.listen-address"),
        "postgres": _flag(SERVICES["postgres-exporter"]["command"], "web.listen-address"),
    }
    for job, address in listening.items():
        assert targets[job] == address
    assert targets["kafka"].endswith(f":{_default(KafkaSettings, 'jmx_exporter_port')}")
    assert targets["postgres"].endswith(f":{_default(PrometheusSettings, 'postgres_exporter_port')}")


def test_init_service_applies_migrations_and_topics_with_the_project_code():
    init = SERVICES["pipeline-init"]
    assert "devstack migrate" in " ".join(init["command"]) and "devstack topics" in " ".join(init["command"])
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
