"""docker-compose.yml runs the same services, ports and settings as the local stack."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from common.settings import PROJECT_ROOT, KafkaSettings, PostgresSettings, PrometheusSettings
from devstack.kafka import server_properties
from ingest.settings import DEFAULT_METRICS_PORT
from spark_streaming.settings import StreamingSettings

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


# --- the whole pipeline: exporters, the project's services, Airflow ---------------------------------

ONE_SHOT = {"pipeline-init", "airflow-init"}
PROJECT_VERSION = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text()


def _pinned(requirements: str, package: str) -> str:
    [version] = re.findall(rf"^{re.escape(package)}==(\S+)$", requirements, re.M)
    return version


def test_every_image_has_a_pinned_tag_and_the_project_images_carry_its_version():
    for name, svc in SERVICES.items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"
        if "build" in svc:
            assert tag == PROJECT_VERSION, (
                f"{name}: the project's image is tagged {tag}, not {PROJECT_VERSION}"
            )
    for base in re.findall(r"^FROM (\S+)", DOCKERFILE, re.M):
        assert ":" in base and not base.endswith(":latest"), base


def test_airflow_image_is_the_official_one_of_the_pinned_version_with_the_local_python():
    version = _pinned((PROJECT_ROOT / "requirements.txt").read_text(), "apache-airflow")
    assert version == _pinned((PROJECT_ROOT / "constraints.txt").read_text(), "apache-airflow")
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert f"FROM apache/airflow:{version}-{python} AS airflow" in DOCKERFILE
    assert f"FROM {python.replace('python', 'python:')}-slim AS pipeline" in DOCKERFILE
    for name in ("airflow-init", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor"):
        assert SERVICES[name]["build"]["target"] == "airflow", name
    for name in ("pipeline-init", "ingest", "stream", "dashboard"):
        assert SERVICES[name]["build"]["target"] == "pipeline", name


def test_long_running_services_have_health_checks_and_every_dependency_a_condition():
    for name, svc in SERVICES.items():
        if name not in ONE_SHOT:
            assert "healthcheck" in svc, f"{name} has no health check"
        assert svc["network_mode"] == "host", name
        for dep, spec in svc.get("depends_on", {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            wanted = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert spec["condition"] == wanted, f"{name} -> {dep}: {spec}"


def test_every_variable_compose_reads_is_in_env_example_or_has_a_default():
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    declared = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in (PROJECT_ROOT / ".env.example").read_text().splitlines()
        if "=" in line
    }
    for name, default in re.findall(r"\$\{([A-Z_]+)(:-[^}]*)?", text):
        assert default or name in declared, f"${{{name}}} has no default and is not in .env.example"
    for svc in SERVICES.values():
        assert svc.get("env_file", ".env") == ".env"


def test_every_scrape_target_is_served_by_a_compose_service_on_the_local_port():
    from dashboard.settings import DashboardSettings
    from orchestration.settings import AirflowSettings

    config = yaml.safe_load((PROJECT_ROOT / "monitoring" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in config["scrape_configs"]}
    af = AirflowSettings.model_construct()
    stream = SERVICES["stream"]["command"]
    served = {
        "prometheus": _flag(SERVICES["prometheus"]["command"], "web.listen-address"),
        "kafka": _flag(SERVICES["kafka-exporter"]["command"], "web.listen-address"),
        "postgres": _flag(SERVICES["postgres-exporter"]["command"], "web.listen-address"),
        "ingest": "127.0.0.1:" + SERVICES["ingest"]["command"][-1],
        "stream": "127.0.0.1:" + stream[stream.index("--metrics-port") + 1],
        "airflow": _flag(SERVICES["statsd-exporter"]["command"], "web.listen-address"),
        # `python -m dashboard` serves its metrics beside Streamlit, on the settings' port
        "dashboard": f"{_default(DashboardSettings, 'host')}:{_default(DashboardSettings, 'metrics_port')}",
    }
    assert served == targets, "a scrape target without a service, or a service Prometheus does not scrape"
    assert targets["ingest"].endswith(f":{DEFAULT_METRICS_PORT}")
    assert targets["stream"].endswith(f":{_default(StreamingSettings, 'metrics_port')}")
    assert targets["airflow"] == f"{af.host}:{af.statsd_exporter_port}"
    for job, address in targets.items():
        if job != "prometheus":
            probes = [n for n, s in SERVICES.items() if address in json.dumps(s.get("healthcheck", {}))]
            assert probes, f"no health check probes {job} at {address}"


def test_postgres_exporter_runs_the_project_queries():
    exporter = SERVICES["postgres-exporter"]
    path = _flag(exporter["command"], "extend.query-path")
    assert f"./monitoring/postgres_exporter_queries.yml:{path}:ro" in exporter["volumes"]
    # the version Debian packages for the local stack, whose queries file format this is
    local = subprocess.run(
        ["prometheus-postgres-exporter", "--version"], capture_output=True, text=True, check=True
    )
    version = re.search(r"version (\d+\.\d+\.\d+)", local.stdout + local.stderr).group(1)
    assert exporter["image"].endswith(f":v{version}")


def test_statsd_exporter_receives_airflow_on_the_local_ports_with_the_project_mapping():
    from orchestration.settings import AirflowSettings

    af = AirflowSettings.model_construct()
    statsd = SERVICES["statsd-exporter"]
    mapping = _flag(statsd["command"], "statsd.mapping-config")
    assert f"./monitoring/statsd_mapping.yml:{mapping}:ro" in statsd["volumes"]
    assert _flag(statsd["command"], "statsd.listen-udp") == f"{af.host}:{af.statsd_port}"
    make = (PROJECT_ROOT / "Makefile").read_text()
    assert statsd["image"].endswith(":" + re.search(r"STATSD_EXPORTER_VERSION := (\S+)", make).group(1))
    env = SERVICES["airflow-scheduler"]["environment"]
    assert (env["AIRFLOW__METRICS__STATSD_HOST"], env["AIRFLOW__METRICS__STATSD_PORT"]) == (
        af.host,
        str(af.statsd_port),
    )


def test_airflow_settings_are_the_ones_devstack_gives_the_local_airflow(tmp_path):
    from devstack.airflow import Airflow
    from orchestration.settings import AirflowSettings

    af = AirflowSettings.model_construct(home=tmp_path)  # defaults; secrets generated into tmp_path
    local = Airflow(af, PostgresSettings.model_construct()).environment()
    env = SERVICES["airflow-api-server"]["environment"]
    names = {k for k in env if k.startswith("AIRFLOW__")}
    assert names <= set(local), f"not set by devstack/airflow.py: {names - set(local)}"
    for same in (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__API__HOST",
        "AIRFLOW__API__PORT",
        "AIRFLOW__API__BASE_URL",
        "AIRFLOW__METRICS__STATSD_PREFIX",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY",
    ):
        assert env[same] == local[same], f"{same}: compose {env[same]!r} != local {local[same]!r}"
    for secret in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"):
        assert re.fullmatch(r"\$\{AF_[A-Z_]+:\?.+\}", env[secret]), f"{secret} must come from .env"
    conn = _expand_defaults(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert conn.startswith(f"postgresql+psycopg2://{af.db_user}:${{AF_DB_PASSWORD:?")
    assert conn.endswith(f"@127.0.0.1:{_default(PostgresSettings, 'port')}/{af.database}")
    for name in ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor"):
        assert SERVICES[name]["command"][:2] == ["airflow", name.removeprefix("airflow-")]
        assert "airflowhome:/opt/airflow" in SERVICES[name]["volumes"], "one AIRFLOW_HOME for logs"
    assert SERVICES["airflow-api-server"]["healthcheck"]["test"][-1].endswith(
        f"{af.host}:{af.api_port}/api/v2/monitor/health"
    )


def test_project_services_run_what_make_demo_runs_on_the_local_ports():
    from dashboard.settings import DashboardSettings

    assert SERVICES["ingest"]["command"][:3] == ["python", "-m", "ingest"]
    assert SERVICES["stream"]["command"][:4] == ["python", "-m", "spark_streaming", "run"]
    assert SERVICES["dashboard"]["command"] == ["python", "-m", "dashboard"]
    dashboard = f"{_default(DashboardSettings, 'host')}:{_default(DashboardSettings, 'port')}"
    assert f"http://{dashboard}/_stcore/health" in " ".join(SERVICES["dashboard"]["healthcheck"]["test"])
    init = " ".join(SERVICES["pipeline-init"]["command"])
    assert "dbt_project dbt -- seed" in init, "dbt_daily expects the seeds loaded once"
