"""Stream latency across deployments, same run (issue 13): the job at 5,000 ticks/s over 1,000 symbols
on local[2] with the stack's one broker (the default), on local[2] with a private 3-node Kafka cluster
(replication 3, min.insync.replicas 2, as the contract makes topics for 3 brokers), and on a private
Spark standalone cluster (2 workers of 1 core, from pyspark's own jars) with the one broker.

Each deployment is one child process holding one warm Spark session and one query
(bench/streaming.py's `_Series`: private topics, a paced producer with ingest's own settings, a
checkpoint). The parent warms each up in turn (until its driver JVM's CPU per batch is steady, or a cap),
then measures them in segments that rotate which goes first each round; only the one measured runs its
query, the others wait with their query stopped. Latency = commit time minus the tick's ingest time,
pooled over a deployment's segments; ratios are to the default. The private clusters' processes stay up
for the whole run, so every segment shares their idle cost.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bench.kafka_cluster import _cluster, _kill
from tests.spark_streaming.helpers import private_spark_cluster

RATE = 5_000
SYMBOLS = 1_000


def _deployment(conn, env: dict[str, str], master: str) -> None:
    """Child process: one Spark session on `master` and one `_Series` whose query runs when told."""
    os.environ.update(env)
    from confluent_kafka.admin import AdminClient

    from bench import streaming as bs
    from common.contract import Topic
    from common.migrate import migrate
    from common.settings import postgres_settings
    from spark_streaming.job import build_session
    from spark_streaming.settings import StreamingSettings

    migrate(postgres_settings().model_copy(update={"database": bs.DATABASE}))
    spark = build_session(StreamingSettings(master=master))
    try:
        with bs._Series(spark, SYMBOLS) as series:
            meta = AdminClient({"bootstrap.servers": series.bootstrap}).list_topics(
                series.topics[Topic.TICKS], 10
            )
            conn.send(("ready", len(meta.topics[series.topics[Topic.TICKS]].partitions[0].replicas)))
            while (command := conn.recv())[0] != "stop":
                if command[0] == "warm":
                    _, window_s, max_s = command
                    warm = bs._warm_up(series, RATE, window_s, max_s, "default")
                    series.rate.value = 0  # idle while the others are measured
                    conn.send(warm)
                else:
                    _, settle_s, measure_s = command
                    seg = series.segment(RATE, "default", settle_s, measure_s)
                    series.rate.value = 0
                    conn.send(
                        {"summary": bs._summary([seg]), "latencies_s": bs._latencies_s(seg["outcomes"])}
                    )
    finally:
        spark.stop()


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if len(values) else None


def run(quick: bool = False) -> dict:
    window_s, max_warm_s = (15, 60) if quick else (30, 210)
    settle_s, measure_s, rounds = (6, 15, 1) if quick else (8, 30, 2)
    state = Path(tempfile.mkdtemp(prefix="bench-topology-"))
    brokers, daemons, children = [], [], {}
    load = [os.getloadavg()[0]]
    ctx = mp.get_context("spawn")
    try:
        brokers = _cluster(3, state)
        spark_settings, master, workers = private_spark_cluster(state / "spark")
        daemons = [*workers, master]
        deployments = {
            "local_1_broker": ({}, "local[2]"),
            "local_3_brokers": (
                {"KAFKA_BOOTSTRAP_SERVERS": brokers[0].settings.bootstrap_servers, "KAFKA_NODES": "3"},
                "local[2]",
            ),
            "cluster_1_broker": ({}, spark_settings.master_url),
        }
        for name, (env, url) in deployments.items():
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_deployment, args=(child, env, url), name=name)
            proc.start()
            children[name] = (proc, parent)
        replicas = {}
        for name, (_, conn) in children.items():
            if not conn.poll(300) or (answer := conn.recv())[0] != "ready":
                raise RuntimeError(f"{name} did not start")
            replicas[name] = answer[1]
        warm = {}
        for name, (_, conn) in children.items():
            conn.send(("warm", window_s, max_warm_s))
            warm[name] = conn.recv()
            load.append(os.getloadavg()[0])
        names = list(children)
        segments: dict[str, list[dict]] = {n: [] for n in names}
        for i in range(rounds):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                conn = children[name][1]
                conn.send(("segment", settle_s, measure_s))
                segments[name].append(conn.recv())
                load.append(os.getloadavg()[0])
        out: dict = {
            "rate_ticks_per_s": RATE,
            "symbols": SYMBOLS,
            "rounds": rounds,
            "segment_s": measure_s,
            "load_average_1m": [round(x, 1) for x in load],
            "kafka_3_nodes": brokers[0].settings.bootstrap_servers,
            "spark_master": spark_settings.master_url,
        }
        for name in names:
            lat = np.concatenate([s["latencies_s"] for s in segments[name]])
            summaries = [s["summary"] for s in segments[name]]
            out[name] = {
                "ticks_topic_replicas": replicas[name],
                "warm_up_s": warm[name]["seconds"],
                "warm_up_steady": warm[name]["steady"],
                "latency_p50_s": _pct(lat, 50),
                "latency_p95_s": _pct(lat, 95),
                "latency_p99_s": _pct(lat, 99),
                "latency_p95_s_per_segment": [s["latency_p95_s"] for s in summaries],
                "cycle_ms_p50_per_segment": [s["cycle_ms_p50"] for s in summaries],
                "collect_ms_p50_per_segment": [s["handler_ms_p50"].get("collect") for s in summaries],
                "rows_per_batch_mean": [s["rows_per_batch_mean"] for s in summaries],
                "cpu_ms_per_batch": summaries[-1]["cpu_ms_per_batch"],
            }
        base = out[names[0]]
        for name in names[1:]:
            out[f"ratio_{name}_to_{names[0]}"] = {
                k: round(out[name][k] / base[k], 3)
                for k in ("latency_p50_s", "latency_p95_s", "latency_p99_s")
                if base[k] and out[name][k]
            }
        return out
    finally:
        for _, conn in children.values():
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("stop",))
        for proc, _ in children.values():
            proc.join(60)
            if proc.is_alive():
                proc.kill()
        for daemon in daemons:
            daemon.stop()
        _kill(brokers)
        shutil.rmtree(state, ignore_errors=True)
