"""The streaming job on a Spark standalone cluster (2 workers of 1 core, from pyspark's own jars):
drain rate of a backlog by one job on 1 executor against two shards (issue 13) on 2 executors, run
either as two shard processes (two drivers, 1 executor each) or as two queries of one application (one
driver, 2 executors); also the old single job on 2 executors. CPU per 10,000 ticks by process.

A backlog of synthetic ticks on private topics of the local broker; each way drains it into its own
private database, the ways in rotating order over the rounds. Drain rate = rows committed after t0 /
(last commit - t0), t0 = the moment every query of the run has committed its batch 0 (the session's
start-up is left out). CPU = user + system time over the same span of: the drivers' process trees
(Python and its JVM), the executors (the workers' children), PostgreSQL's and Kafka's processes, and the
whole machine (other sessions' work included).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from common.contract import Topic
from common.migrate import drop_database
from common.settings import kafka_settings
from spark_streaming.feed import delete_topics, tick_value
from tests.spark_streaming.helpers import (
    JobProcess,
    private_database,
    private_spark_cluster,
    private_topics,
    produce,
    query,
    wait_for,
)


def _tree_cpu_s(pid: int) -> float:
    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def _backlog(count: int, symbols: int) -> list[tuple[str, bytes]]:
    now = int(time.time() * 1000)
    start = now - 2 * 3_600_000
    return [
        (sym := f"B{i % symbols:04d}", tick_value(sym, start + i * 10, 100.0 + (i % 97) / 10, 1.0, now))
        for i in range(count)
    ]


WAYS: dict[str, list[dict]] = {
    # name: one JobProcess per entry, with these settings
    "1 job, 1 executor": [{"cores_max": 1}],
    "1 job, 2 executors": [{"cores_max": 2}],
    "2 shard processes, 1 executor each": [{"cores_max": 1, "shards": 2, "shard": i} for i in range(2)],
    "2 shards in 1 application, 2 executors": [{"cores_max": 2, "shards": 2}],
}


def _named_cpu_s(match) -> float:
    """CPU seconds of every process whose name or command line `match` accepts."""
    total = 0.0
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if match(proc.info["name"] or "", " ".join(proc.info["cmdline"] or [])):
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            pass
    return total


def _cpu(jobs: list[JobProcess], workers) -> dict[str, float]:
    busy = psutil.cpu_times()
    return {
        "drivers": sum(_tree_cpu_s(j.proc.pid) for j in jobs if j.proc is not None),
        "drivers_python": sum(_own_cpu_s(j.proc.pid) for j in jobs if j.proc is not None),  # JVM: the rest
        "executors": sum(_tree_cpu_s(w.pid()) - _own_cpu_s(w.pid()) for w in workers if w.pid()),
        "postgres": _named_cpu_s(lambda name, _cmd: name.startswith("postgres")),
        "kafka": _named_cpu_s(lambda _name, cmd: "kafka.Kafka" in cmd),
        "machine": busy.user
        + busy.system
        + busy.nice
        + getattr(busy, "irq", 0)
        + getattr(busy, "softirq", 0),
    }


def _own_cpu_s(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except psutil.Error:
        return 0.0


def _drain(tmp: Path, bootstrap: str, backlog, master: str, way: str, workers, batch: int) -> dict:
    """One way's run on fresh topics: every query started and through batch 0 (a warm-up tick per
    symbol), then the backlog produced at once and drained."""
    tag = uuid.uuid4().hex[:6]
    topics = private_topics(bootstrap, f"benchcluster{tag}")
    pg = private_database(f"bench_cluster_{tag}")
    run_dir = tmp / f"run-{tag}"
    run_dir.mkdir()
    name = f"bench_{tag}"
    jobs = [
        JobProcess(
            run_dir, topics, pg, master=master, max_offsets_per_trigger=batch, query_name=name, **extra
        )
        for extra in WAYS[way]
    ]
    queries = max(1, *(extra.get("shards", 1) for extra in WAYS[way]))
    symbols = sorted({sym for sym, _ in backlog})
    warm = [(sym, tick_value(sym, int(time.time() * 1000) - 3 * 3_600_000, 100.0, 1.0, 1)) for sym in symbols]

    def consumed() -> int:
        return query(pg, "select coalesce(sum(input_rows), 0) from rt.stream_ledger")[0][0]

    try:
        for job in jobs:
            job.start()
        produce(bootstrap, topics[Topic.TICKS], warm)
        wait_for(lambda: consumed() >= len(warm), 300, "the warm-up ticks", interval_s=0.2)
        started = query(pg, "select count(distinct query_id) from rt.stream_ledger")[0][0]
        assert started == queries, (way, started)
        cpu0 = _cpu(jobs, workers)
        t0 = time.time()
        produce(bootstrap, topics[Topic.TICKS], backlog)
        wait_for(lambda: consumed() >= len(warm) + len(backlog), 600, "the backlog to drain", interval_s=0.2)
        cpu1 = _cpu(jobs, workers)
        last = query(pg, "select extract(epoch from max(committed_at)) from rt.stream_ledger")[0][0]
        rows = len(backlog)
        per_10k = {k: (cpu1[k] - cpu0[k]) / rows * 10_000 for k in cpu0}
        return {
            "rows_per_s": rows / (float(last) - t0),
            **{f"cpu_s_per_10k_{k}": v for k, v in per_10k.items()},
        }
    finally:
        for job in jobs:
            job.stop()
        delete_topics(bootstrap, topics.values())
        drop_database(pg)


def run(quick: bool = False, count: int | None = None, rounds: int | None = None) -> dict:
    """`count` ticks (default 60,000; 30,000 quick) of 200 symbols in 5,000-row batches per query,
    `rounds` rounds (default 3; 1 quick). 100,000 ticks of 500 symbols in 10,000-row batches once did
    not drain within 600 s with the earlier method (not understood); these sizes drain in 7-15 s."""
    symbols, batch = 200, 5_000
    count = count or (30_000 if quick else 60_000)
    rounds = rounds or (1 if quick else 3)
    tmp = Path(tempfile.mkdtemp(prefix="bench-spark-cluster-"))
    settings, master, workers = private_spark_cluster(tmp / "spark")
    bootstrap = kafka_settings().bootstrap_servers
    load = [os.getloadavg()[0]]
    try:
        backlog = _backlog(count, symbols)
        ways = list(WAYS)
        results: dict[str, list[dict]] = {way: [] for way in ways}
        for i in range(rounds):
            for way in ways[i % len(ways) :] + ways[: i % len(ways)]:  # rotate who goes first
                results[way].append(_drain(tmp, bootstrap, backlog, settings.master_url, way, workers, batch))
                load.append(os.getloadavg()[0])
        med = {way: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for way, rs in results.items()}
        base = med["1 job, 1 executor"]["rows_per_s"]
        return {
            "backlog_ticks": count,
            "rounds": rounds,
            "load_average_1m": [round(x, 1) for x in load],
            "goal_ratio": 1.6,
            **{
                way: {
                    "rows_per_s": round(m["rows_per_s"]),
                    "ratio_to_1_job_1_executor": round(m["rows_per_s"] / base, 3),
                    "rounds_rows_per_s": [round(r["rows_per_s"]) for r in results[way]],
                    **{k: round(v, 3) for k, v in m.items() if k.startswith("cpu_")},
                }
                for way, m in med.items()
            },
        }
    finally:
        for daemon in [*workers, master]:
            daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)
