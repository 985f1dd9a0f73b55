"""`make up`, `make status`, `make down` on a private stack, and the one-sentence failures."""

from __future__ import annotations

import socket
import time

import pytest

from tests.foundation.private_stack import devstack, make, private_env

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SERVICES = ("postgresql", "kafka", "prometheus", "postgres-exporter")


def _status_rows(output: str) -> dict[str, str]:
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 4 and cells[0] in SERVICES:  # service, address, pid, state[, memory]
            rows[cells[0]] = cells[3]
    return rows


def test_make_up_from_stopped_state_brings_every_service_up_and_status_reports_healthy(tmp_path):
    env = private_env(tmp_path / "state")
    try:
        before = make(env, "status")
        assert _status_rows(before.stdout) == dict.fromkeys(SERVICES, "stopped"), before.stdout

        started = time.monotonic()
        result = make(env, "up")
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr + result.stdout
        print(f"make up from a stopped, empty state: {elapsed:.1f} s")

        after = make(env, "status")
        assert _status_rows(after.stdout) == dict.fromkeys(SERVICES, "healthy"), after.stdout
        assert devstack(env, "status", "--check").returncode == 0

        again = devstack(env, "up")
        assert again.returncode == 0
        assert again.stderr.count("already running") == len(SERVICES), again.stderr
    finally:
        make(env, "down")
    stopped = make(env, "status")
    assert _status_rows(stopped.stdout) == dict.fromkeys(SERVICES, "stopped"), stopped.stdout
    assert devstack(env, "status", "--check").returncode == 1


def _one_sentence_error(result) -> str:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), result.stderr
    return " ".join(line.strip() for line in lines)


def test_up_with_a_taken_port_names_the_port_and_starts_nothing(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = private_env(tmp_path / "state", PROMETHEUS_PORT=str(port))
        message = _one_sentence_error(devstack(env, "up"))
    assert f"port {port}" in message and "already taken" in message
    assert not (tmp_path / "state" / "kafka" / "kafka.pid").exists()
    assert not (tmp_path / "state" / "postgres" / "data").exists()


def test_up_without_java_says_java_is_missing(tmp_path):
    env = private_env(tmp_path / "state", JAVA_HOME=str(tmp_path / "no-jdk"))
    try:
        message = _one_sentence_error(devstack(env, "up"))
    finally:
        devstack(env, "down")
    assert "Java was not found" in message and "no-jdk" in message


def test_up_with_a_damaged_postgres_data_directory_says_so(tmp_path):
    data = tmp_path / "state" / "postgres" / "data"
    data.mkdir(parents=True)
    (data / "base").mkdir()
    (data / "postgresql.conf").write_text("# half a cluster\n")
    env = private_env(tmp_path / "state")
    try:
        message = _one_sentence_error(devstack(env, "up"))
    finally:
        devstack(env, "down")
    assert "damaged" in message and str(data) in message


def test_up_with_a_damaged_kafka_log_directory_says_so(tmp_path):
    logs = tmp_path / "state" / "kafka" / "data"
    logs.mkdir(parents=True)
    (logs / "market.ticks.v1-0").mkdir()
    env = private_env(tmp_path / "state")
    try:
        message = _one_sentence_error(devstack(env, "up"))
    finally:
        devstack(env, "down")
    assert "damaged" in message and "meta.properties" in message
