"""Private topics, a private database and the job as a child process, for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common.contract import Topic
from common.db import fetch_all
from common.migrate import recreate_database
from common.settings import PROJECT_ROOT, PostgresSettings
from devstack.process import wait_until
from devstack.spark import SparkClusterSettings, SparkMaster, SparkWorker, cluster
from spark_streaming.feed import create_topics, producer, send, tick_value
from tests.conftest import free_ports

BAR_MS = 60_000


def private_topics(bootstrap: str, tag: str) -> dict[Topic, str]:
    names = {
        Topic.TICKS: f"test.ticks.{tag}",
        Topic.BARS: f"test.bars.{tag}",
        Topic.DEADLETTER: f"test.dl.{tag}",
    }
    create_topics(bootstrap, names)
    return names


def private_database(name: str, pg: PostgresSettings | None = None) -> PostgresSettings:
    """A fresh database with every migration applied (dropped first if a previous run left it)."""
    return recreate_database(name, pg)


def query(s: PostgresSettings, text: str, args: tuple = ()) -> list[tuple]:
    return fetch_all(text, args, settings=s)


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class JobProcess:
    """`python -m spark_streaming run` as a child process with its own settings (STREAM_* / PG_*)."""

    module = "spark_streaming"  # what `python -m` runs; a subclass runs another entry point of the job

    def __init__(self, tmp: Path, topics: dict[Topic, str], pg: PostgresSettings, **settings: object) -> None:
        self.log_path = tmp / f"job-{uuid.uuid4().hex[:6]}.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT_ROOT),
            "PYSPARK_PYTHON": sys.executable,
            "STREAM_DATABASE": pg.database,
            "STREAM_TICKS_TOPIC": topics[Topic.TICKS],
            "STREAM_BARS_TOPIC": topics[Topic.BARS],
            "STREAM_DEADLETTER_TOPIC": topics[Topic.DEADLETTER],
            "STREAM_STARTING_OFFSETS": "earliest",
            "STREAM_CHECKPOINT_DIR": str(tmp / "checkpoint"),
            "STREAM_METRICS_PORT": "0",
            "STREAM_QUERY_NAME": f"test_{uuid.uuid4().hex[:6]}",
            "PG_PORT": str(pg.port),
            **{f"STREAM_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole process group: the Python driver and its JVM."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return (
            "\n".join(line for line in lines if not line.lstrip().startswith("at "))[-4000:] if lines else ""
        )


class ExecutorParseJobProcess(JobProcess):
    """The job with parsing on the executors (the issue 13 prototype, spark_streaming/executor_parse.py)."""

    module = "spark_streaming.executor_parse"


def bars_as_ticks(
    symbol: str, start_ms: int, opens, closes, volumes, ingest_ms: int
) -> list[tuple[str, bytes]]:
    """Two ticks per bar: the open at second 0 and the close at second 30, half the volume each."""
    out = []
    for i, (o, c, v) in enumerate(zip(opens, closes, volumes, strict=True)):
        t = start_ms + i * BAR_MS
        out.append((symbol, tick_value(symbol, t, float(o), float(v) / 2, ingest_ms)))
        out.append((symbol, tick_value(symbol, t + 30_000, float(c), float(v) / 2, ingest_ms)))
    return out


def produce(bootstrap: str, topic: str, items: list[tuple[str | None, bytes]]) -> None:
    p = producer(bootstrap)
    send(p, topic, items)
    assert p.flush(60) == 0


def random_walk(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))


def free_port_runs(runs: int, length: int) -> list[int]:
    """The first ports of `runs` runs of `length` consecutive free loopback ports each (services that
    number their nodes' ports from a base: a Kafka cluster's controllers, a Spark cluster's workers)."""

    def free(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    found: list[int] = []
    for base in free_ports(50):
        taken = {p for b in found for p in range(b, b + length)}
        if all(free(p) and p not in taken for p in range(base, base + length)):
            found.append(base)
            if len(found) == runs:
                return found
    raise RuntimeError("no free runs of loopback ports")


def private_spark_cluster(
    state_dir: Path, workers: int = 2, worker_cores: int = 1
) -> tuple[SparkClusterSettings, SparkMaster, list[SparkWorker]]:
    """A standalone Spark cluster on free loopback ports (beside any the stack runs), started and
    healthy: the master, then `workers` workers of `worker_cores` cores. The caller stops them."""
    master_port, webui = free_ports(2)
    worker_port, worker_webui = free_port_runs(2, workers)
    settings = SparkClusterSettings(
        master_port=master_port,
        master_webui_port=webui,
        worker_port=worker_port,
        worker_webui_port=worker_webui,
        workers=workers,
        worker_cores=worker_cores,
    )
    master, nodes = cluster(settings, state_dir)
    try:
        for daemon in [master, *nodes]:
            daemon.start()
            if not wait_until(daemon.healthy, 180):
                raise RuntimeError(daemon.failure_hint())
    except BaseException:
        for daemon in [*nodes, master]:
            daemon.stop()
        raise
    return settings, master, nodes
