"""Bring the whole local stack up or down, and report its status."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from common.migrate import migrate
from common.settings import kafka_settings, postgres_settings, prometheus_settings, stack_settings
from devstack.errors import StackError
from devstack.kafka import Kafka
from devstack.postgres import Postgres
from devstack.process import wait_until
from devstack.prometheus import PostgresExporter, Prometheus

log = logging.getLogger(__name__)


class Service(Protocol):
    name: str

    @property
    def address(self) -> str: ...
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


def services() -> dict[str, Service]:
    state = stack_settings().state_dir
    return {
        "postgresql": Postgres(postgres_settings(), state),
        "kafka": Kafka(kafka_settings(), state),
        "prometheus": Prometheus(prometheus_settings(), state),
        "postgres-exporter": PostgresExporter(postgres_settings(), state),
    }


def _wait_healthy(svc: Service, timeout_s: float) -> None:
    if not wait_until(svc.healthy, timeout_s):
        hint = getattr(svc, "failure_hint", lambda: "")()
        raise StackError(f"{svc.name} did not become healthy within {timeout_s:.0f} s; {hint}")


def up(timeout_s: float = 90.0) -> dict[str, float]:
    """Start every service (those already running are left alone); returns seconds to healthy."""
    started = time.monotonic()
    svc = services()
    timings: dict[str, float] = {}
    # Kafka takes longest to boot: spawn it first, then do PostgreSQL while it starts.
    svc["kafka"].start()
    svc["prometheus"].start()
    svc["postgresql"].start()
    _wait_healthy(svc["postgresql"], timeout_s)
    applied = migrate(postgres_settings())
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    timings["postgresql"] = time.monotonic() - started
    svc["postgres-exporter"].start()
    _wait_healthy(svc["kafka"], timeout_s)
    created = svc["kafka"].ensure_topics()
    if created:
        log.info("created topics: %s", ", ".join(created))
    timings["kafka"] = time.monotonic() - started
    _wait_healthy(svc["prometheus"], timeout_s)
    timings["prometheus"] = time.monotonic() - started
    _wait_healthy(svc["postgres-exporter"], 20)
    timings["postgres-exporter"] = time.monotonic() - started
    return timings


def down() -> list[str]:
    """Stop every service; returns the names of those that were running."""
    stopped = []
    for name, svc in reversed(list(services().items())):
        if svc.stop():
            stopped.append(name)
    return stopped


def status() -> list[ServiceStatus]:
    return [
        ServiceStatus(name, svc.address, svc.pid(), svc.running(), svc.running() and svc.healthy())
        for name, svc in services().items()
    ]
