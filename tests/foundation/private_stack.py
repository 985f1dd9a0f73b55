"""A second, private instance of the local stack on free loopback ports with its own state folder,
so lifecycle tests can stop and start services without touching the shared stack."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from common.settings import PROJECT_ROOT, stack_settings
from tests.conftest import free_ports

PYTHON = str(PROJECT_ROOT / ".state" / "venv" / "bin" / "python")


def private_env(state_dir: Path, **overrides: str) -> dict[str, str]:
    pg, kafka, controller, jmx, prom, exporter = free_ports(6)
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "MP_STATE_DIR": str(state_dir),
        "MP_JARS_DIR": str(stack_settings().jars_dir),
        "PG_PORT": str(pg),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka}",
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_JMX_EXPORTER_PORT": str(jmx),
        "KAFKA_HEAP": "256m",
        "PROMETHEUS_PORT": str(prom),
        "PROMETHEUS_POSTGRES_EXPORTER_PORT": str(exporter),
    }
    env.update(overrides)
    return env


def devstack(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "devstack", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make(env: dict[str, str], target: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
