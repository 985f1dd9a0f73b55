"""Bring the whole local stack up or down, and report its status."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from common.db import transaction
from common.migrate import migrate
from common.settings import kafka_settings, postgres_settings, prometheus_settings, stack_settings
from devstack.errors import StackError
from devstack.kafka import ClusterHealth, Kafka, cluster_health, cluster_nodes, start_nodes, stop_nodes
from devstack.postgres import Postgres
from devstack.process import require_free_ports, tree_pss, wait_until
from devstack.prometheus import PostgresExporter, Prometheus

log = logging.getLogger(__name__)


class Service(Protocol):
    name: str

    @property
    def address(self) -> str: ...
    @property
    def ports(self) -> list[int]: ...
    def start(self) -> None: ...
    def stop(self) -> bool: ...
    def running(self) -> bool: ...
    def healthy(self) -> bool: ...
    def pid(self) -> int | None: ...


@dataclass
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    running: bool
    healthy: bool
    optional: bool = False  # Airflow's, the demo's: `status --check` counts them only when running
    pss_bytes: int = 0  # memory of the process tree (proportional set size)


def services() -> dict[str, Service]:
    """The core services; Kafka is `kafka`, or `kafka-1` ... `kafka-n` with KAFKA_NODES=n."""
    state = stack_settings().state_dir
    return {
        "postgresql": Postgres(postgres_settings(), state),
        **{node.name: node for node in cluster_nodes(kafka_settings(), state)},
        "prometheus": Prometheus(prometheus_settings(), kafka_settings(), state),
        "postgres-exporter": PostgresExporter(
            postgres_settings(), state, port=prometheus_settings().postgres_exporter_port
        ),
    }


def optional_services() -> dict[str, Service]:
    """Started by `make airflow` or `devstack spark` (not by `up`), stopped by `down`, shown by `status`."""
    from devstack import spark
    from devstack.airflow import Airflow
    from devstack.statsd import StatsdExporter
    from orchestration.settings import airflow_settings

    af = airflow_settings()
    return {
        "statsd-exporter": StatsdExporter(af, stack_settings().state_dir),
        **{c.name: c for c in Airflow(af, postgres_settings()).components().values()},
        **spark.services(spark.SparkClusterSettings(), stack_settings().state_dir),
    }


def _wait_healthy(svc: Service, timeout_s: float) -> None:
    if not wait_until(svc.healthy, timeout_s):
        hint = getattr(svc, "failure_hint", lambda: "")()
        raise StackError(f"{svc.name} did not become healthy within {timeout_s:.0f} s; {hint}")


@dataclass
class StartReport:
    name: str
    was_running: bool
    seconds_to_healthy: float


def up(timeout_s: float = 90.0) -> list[StartReport]:
    """Start every service (those already running are left alone), apply migrations, create topics."""
    started = time.monotonic()
    svc = services()
    was_running = {name: s.running() for name, s in svc.items()}
    reports: list[StartReport] = []
    # check every port before starting anything, so a conflict leaves nothing half-started
    for name, service in svc.items():
        if not was_running[name]:
            require_free_ports(name, "127.0.0.1", service.ports)
    try:
        _start_all(svc, reports, started, was_running, timeout_s)
    except Exception:
        for name, service in svc.items():  # leave nothing half-started by this call
            if not was_running[name]:
                service.stop()
        raise
    return reports


def _start_all(
    svc: dict[str, Service],
    reports: list[StartReport],
    started: float,
    was_running: dict[str, bool],
    timeout_s: float,
) -> None:
    def healthy(name: str, timeout: float = timeout_s) -> None:
        _wait_healthy(svc[name], timeout)
        reports.append(StartReport(name, was_running[name], time.monotonic() - started))

    kafka = [s for s in svc.values() if isinstance(s, Kafka)]
    # Kafka takes longest to boot: spawn it first, then do PostgreSQL while it starts.
    start_nodes(kafka)
    svc["prometheus"].start()
    svc["postgresql"].start()
    _wait_healthy(svc["postgresql"], timeout_s)
    applied = migrate(postgres_settings())
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    for action, partition in maintain_partitions():
        log.info("partitions: %s %s", action, partition)
    reports.append(StartReport("postgresql", was_running["postgresql"], time.monotonic() - started))
    svc["postgres-exporter"].start()
    for node in kafka:  # topics get their replicas on every node: all must be registered first
        _wait_healthy(node, timeout_s)
    created = kafka[0].ensure_topics()
    if created:
        log.info("created topics: %s", ", ".join(created))
    for node in kafka:
        reports.append(StartReport(node.name, was_running[node.name], time.monotonic() - started))
    healthy("prometheus")
    healthy("postgres-exporter", 20)


def maintain_partitions() -> list[tuple[str, str]]:
    """Make partitions ahead and drop those past retention (raw.maintain_partitions)."""
    with transaction("admin") as cur:
        cur.execute("select action, partition_name from raw.maintain_partitions()")
        return cur.fetchall()


def down() -> list[str]:
    """Stop every service; returns the names of those that were running."""
    stopped = []
    for name, svc in [*reversed(list(optional_services().items())), *reversed(list(services().items()))]:
        if isinstance(svc, Kafka):
            continue
        if svc.stop():
            stopped.append(name)
        if name == "prometheus":  # Kafka's place in the order; a cluster's nodes stop together
            stopped += stop_nodes([s for s in services().values() if isinstance(s, Kafka)])
    return stopped


def _answers(svc: Service, attempts: int = 3, pause_s: float = 1.0) -> bool:
    """A running service answers its health probe; a probe that timed out (a busy machine) is tried
    again before the service is reported as not answering."""
    for attempt in range(attempts):
        if svc.healthy():
            return True
        if attempt + 1 < attempts:
            time.sleep(pause_s)
    return False


def status() -> list[ServiceStatus]:
    """Every core service, then the optional ones (Airflow and its metrics exporter), then the demo's
    processes (ingest, the streaming job, the dashboard), each with its memory."""
    from devstack.demo import pipeline_processes

    rows = []
    for optional, group in ((False, services()), (True, optional_services()), (True, pipeline_processes())):
        for name, svc in group.items():
            pid, running = svc.pid(), svc.running()
            rows.append(
                ServiceStatus(
                    name,
                    svc.address,
                    pid,
                    running,
                    running and _answers(svc),
                    optional,
                    tree_pss(pid) if running and pid else 0,
                )
            )
    return rows


def kafka_health() -> ClusterHealth | None:
    """Brokers, partition leaders and under-replicated partitions of the configured cluster."""
    return cluster_health(kafka_settings())
