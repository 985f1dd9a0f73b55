"""The streaming job on a Spark standalone cluster (devstack's, from pyspark's own jars: a master and 2
workers of 1 core on loopback) gives row for row the same raw, bars, indicators and signals as in local
mode, from the same Kafka input, even with a worker and its executor killed -9 mid-run and then the
driver killed -9 and started again; only the job's master differs (STREAM_MASTER)."""

from __future__ import annotations

import os
import signal
import time
import uuid

import psutil
import pytest

from common.contract import Topic
from common.migrate import drop_database
from spark_streaming.feed import delete_topics
from tests.spark_streaming.helpers import (
    JobProcess,
    private_database,
    private_spark_cluster,
    private_topics,
    produce,
    query,
    wait_for,
)
from tests.spark_streaming.test_recovery import TABLES, _input, _snapshot

pytestmark = [pytest.mark.slow, pytest.mark.stack]


def _kill_tree(pid: int | None) -> None:
    if pid is None:
        return
    try:
        proc = psutil.Process(pid)
        for child in proc.children(recursive=True):  # a worker's executors
            child.kill()
        os.kill(pid, signal.SIGKILL)
    except (psutil.Error, ProcessLookupError):
        pass


@pytest.fixture
def spark_cluster(tmp_path):
    settings, master, workers = private_spark_cluster(tmp_path / "spark")
    try:
        yield settings, master, workers
    finally:
        for daemon in [*workers, master]:
            _kill_tree(daemon.pid())


def test_the_job_on_a_cluster_with_a_worker_and_the_driver_killed_lands_the_same_rows_as_local_mode(
    bootstrap_servers, spark_cluster, tmp_path
):
    settings, master, workers = spark_cluster
    tag = uuid.uuid4().hex[:6].upper()
    topics = private_topics(bootstrap_servers, tag.lower())
    items = _input(tag, int(time.time() * 1000))
    produce(bootstrap_servers, topics[Topic.TICKS], items)
    pg_local = private_database(f"test_stream_local_{tag.lower()}")
    pg_cluster = private_database(f"test_stream_cluster_{tag.lower()}")
    job_settings = {"max_offsets_per_trigger": 150, "allowed_lateness_ms": 600_000}
    (tmp_path / "local").mkdir()
    (tmp_path / "cluster").mkdir()
    local = JobProcess(tmp_path / "local", topics, pg_local, **job_settings)
    on_cluster = JobProcess(
        tmp_path / "cluster", topics, pg_cluster, master=settings.master_url, cores_max=2, **job_settings
    )

    def consumed(pg) -> int:
        return query(pg, "select coalesce(sum(input_rows), 0) from rt.stream_ledger")[0][0]

    def batches(pg) -> int:
        return query(pg, "select count(*) from rt.stream_ledger")[0][0]

    local.start()
    on_cluster.start()
    try:
        # the application holds an executor on each worker (1 core each) while it runs
        wait_for(
            lambda: all((w.registration() or {}).get("coresused") == 1 for w in workers),
            240,
            "an executor on each worker",
        )
        apps = master.master_state()["activeapps"]
        assert [a["cores"] for a in apps] == [2], apps
        assert on_cluster.env["STREAM_QUERY_NAME"] in apps[0]["name"]
        # kill -9 a worker and its executor once the cluster run committed batches, with input left
        wait_for(lambda: batches(pg_cluster) >= 2, 240, "two batches on the cluster")
        victim = workers[0]
        _kill_tree(victim.pid())
        done_at_kill = consumed(pg_cluster)
        assert 0 < done_at_kill < len(items), done_at_kill
        wait_for(lambda: not victim.healthy(), 120, "the master to see the worker gone")
        # then kill -9 the driver (Python and its JVM) once it committed more, and start it again
        wait_for(lambda: batches(pg_cluster) >= 5, 240, "five batches on the cluster")
        on_cluster.kill()
        done_at_driver_kill = consumed(pg_cluster)
        assert done_at_kill < done_at_driver_kill < len(items), done_at_driver_kill
        on_cluster.start()
        wait_for(lambda: consumed(pg_local) >= len(items), 300, "the local run to finish")
        wait_for(lambda: consumed(pg_cluster) >= len(items), 300, "the cluster run to finish")
        assert consumed(pg_cluster) == consumed(pg_local) == len(items)
        assert on_cluster.alive(), on_cluster.log_tail()
        expected, got = _snapshot(pg_local), _snapshot(pg_cluster)
        for name in TABLES:
            assert len(expected[name]) > 0 or name == "rt.signals"
            assert got[name] == expected[name], f"{name} differs between the cluster and local mode"
        ids = [r[0] for r in query(pg_cluster, "select batch_id from rt.stream_ledger order by 1")]
        assert ids == list(range(len(ids)))  # no gap, no batch twice
        restarts = on_cluster.log_path.read_text(errors="replace").count("event=query_restarting")
        print(
            f"\n{len(items)} records in {len(ids)} batches on the cluster, worker 1 killed -9 after "
            f"{done_at_kill} records, the driver after {done_at_driver_kill}; the query restarted itself "
            f"{restarts} time(s); tables equal row for row"
        )
    finally:
        local.stop()
        on_cluster.stop()
        delete_topics(bootstrap_servers, topics.values())
        drop_database(pg_local)
        drop_database(pg_cluster)
