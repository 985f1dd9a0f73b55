"""Supervise the never-ending Spark streaming job from outside (it must not hold a worker slot).

The job runs as AF_STREAM_SHARDS processes (default STREAM_SHARDS, 1): shard *i* of *N* is started with
`--shards N --shard i` and has its own query name, checkpoint folder, metrics port (the job's rule,
spark_streaming/shards.py), pid file, log and restart log (`<home>/stream-s<i>of<N>/`; one shard:
`<home>/stream/`, as before sharding). Every shard is checked and restarted on its own, so one dead
shard is restarted while the others keep running. For each shard a check reads three signals and decides:

- the process: the job's pid file (the demo's `.state/demo/stream/stream.pid` by default); a pid file
  whose process is gone = dead (killed, crashed); no pid file = stopped on purpose (`make demo-stop`
  removes it) or never started: left alone;
- its heartbeat row (rt.stream_heartbeat, refreshed every few seconds, also when idle): older than
  AF_STREAM_HEARTBEAT_STALE_S = hung;
- its progress against Kafka: the end offsets of its partitions (Kafka admin API; a shard's are those
  it reads, p % N == i) against the offsets of the last batch in the ledger (rt.stream_ledger's newest
  batch id, whose end offsets Spark keeps in the checkpoint's offsets/<batch id>); lag > 0 while no
  batch committed for AF_STREAM_STUCK_S = stuck.

A dead, hung or stuck shard is stopped (SIGTERM, then SIGKILL) and started again detached, at most
AF_STREAM_MAX_RESTARTS_PER_HOUR times an hour per shard (restarts are logged in its folder's
restarts.jsonl); past the cap it alerts and leaves the shard to a human. A shard (re)started less than
AF_STREAM_START_GRACE_S ago is left to boot.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.db import DatabaseUnavailable, connect
from common.settings import PostgresSettings, kafka_settings, postgres_settings
from devstack.demo import Background
from devstack.process import read_pid
from orchestration.alerts import alert
from orchestration.settings import AirflowSettings, airflow_settings
from spark_streaming.checkpoint import Offsets, checkpoint_offsets
from spark_streaming.settings import StreamingSettings
from spark_streaming.shards import assignment, shard_settings, suffix, topic_partitions

log = logging.getLogger(__name__)

HEALTHY, STARTING, STOPPED, DEAD, HUNG, STUCK = "healthy", "starting", "stopped", "dead", "hung", "stuck"


@dataclass(frozen=True)
class Shard:
    """One supervised job process: shard `index` of `count` (count 1: the job as before sharding)."""

    index: int
    count: int
    query_name: str
    checkpoint_dir: Path
    metrics_port: int
    partitions: dict[str, list[int]] | None  # what it reads; None: every partition (one shard subscribes)

    @property
    def name(self) -> str:
        """Its process's name and folder under AF_STREAM_HOME: `stream`, or `stream-s<i>of<N>`."""
        return "stream" + suffix(self.count, self.index)


def shards(s: AirflowSettings) -> list[Shard]:
    """The supervised job's shards, named by the job's own rule (spark_streaming.shards)."""
    base = StreamingSettings(
        query_name=s.stream_query_name,
        checkpoint_dir=s.stream_checkpoint_dir,
        metrics_port=s.stream_metrics_port,
        shards=s.stream_shards,
        shard=None,
    )
    n = s.stream_shards
    out = []
    for i in range(n):
        own = shard_settings(base, i)
        partitions = None if n == 1 else assignment(topic_partitions(base), n, i)
        out.append(Shard(i, n, own.query_name, own.checkpoint_dir, own.metrics_port, partitions))
    return out


def stream_process(s: AirflowSettings, shard: Shard | None = None) -> Background:
    """A shard of the supervised job as a background process (the same command and pid file as the
    demo's); without `shard`, the first (with one shard: the job). The job adds the shard's suffix to
    the query name, checkpoint folder and metrics port itself."""
    shard = shard or shards(s)[0]
    args = [
        "-m",
        "spark_streaming",
        "run",
        "--query-name",
        s.stream_query_name,
        "--checkpoint-dir",
        str(s.stream_checkpoint_dir),
        "--starting-offsets",
        "earliest",
        "--metrics-port",
        str(s.stream_metrics_port),
        "--shards",
        str(shard.count),
    ]
    if shard.count > 1:
        args += ["--shard", str(shard.index)]
    if s.stream_database:
        args += ["--database", s.stream_database]
    return Background(shard.name, args, state_dir=s.stream_home)


def stream_processes(s: AirflowSettings) -> list[Background]:
    """Every shard's process, in shard order."""
    return [stream_process(s, shard) for shard in shards(s)]


@dataclass
class Observation:
    pid_file: bool
    pid: int | None
    started_age_s: float | None
    beat_age_s: float | None
    last_batch_age_s: float | None
    last_batch_id: int | None
    lag: int | None
    lag_by_topic: dict[str, int] = field(default_factory=dict)


@dataclass
class Report:
    verdict: str
    action: str  # none | restarted | started | capped
    reason: str
    observation: Observation
    new_pid: int | None = None
    query_name: str = ""  # the shard's

    def as_dict(self) -> dict:
        return asdict(self)


def _heartbeat(s: AirflowSettings, pg: PostgresSettings, query_name: str) -> tuple | None:
    """(query_id, beat age s, last batch age s, newest ledger batch id) or None without a row."""
    conn = connect("reader", pg, database=s.stream_database or pg.database)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "select h.query_id, extract(epoch from now() - h.beat_at),"
                " extract(epoch from now() - h.last_batch_at),"
                " (select max(batch_id) from rt.stream_ledger l where l.query_id = h.query_id)"
                " from rt.stream_heartbeat h where h.query_name = %s",
                (query_name,),
            )
            return cur.fetchone()
    finally:
        conn.close()


def end_offsets(topics: list[str], timeout_s: float = 10.0) -> dict[str, dict[int, int]]:
    """Kafka's end offset of every partition of `topics` (admin API, list_offsets latest)."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    admin = AdminClient({"bootstrap.servers": kafka_settings().bootstrap_servers})
    meta = admin.list_topics(timeout=timeout_s)
    wanted = {
        TopicPartition(t, p): OffsetSpec.latest()
        for t in topics
        if t in meta.topics
        for p in meta.topics[t].partitions
    }
    out: dict[str, dict[int, int]] = {}
    if not wanted:
        return out
    for tp, future in admin.list_offsets(wanted, request_timeout=timeout_s).items():
        out.setdefault(tp.topic, {})[tp.partition] = future.result(timeout=timeout_s).offset
    return out


def lag_by_topic(ends: Offsets, done: Offsets, partitions: dict[str, list[int]] | None) -> dict[str, int]:
    """Records per topic between a batch's end offsets (`done`) and Kafka's (`ends`), over the
    partitions a shard reads (None: every partition in `ends`)."""
    out: dict[str, int] = {}
    for topic, parts in ends.items():
        if partitions is not None and topic not in partitions:
            continue
        mine = parts if partitions is None else {p: e for p, e in parts.items() if p in partitions[topic]}
        out[topic] = sum(max(0, end - done.get(topic, {}).get(p, 0)) for p, end in mine.items())
    return out


def observe(
    s: AirflowSettings, pg: PostgresSettings | None = None, shard: Shard | None = None
) -> Observation:
    """One shard's signals (without `shard`: the first; with one shard, the job's)."""
    shard = shard or shards(s)[0]
    proc = stream_process(s, shard)
    pid = read_pid(proc.pid_file)
    started_age = time.time() - proc.pid_file.stat().st_mtime if pid else None
    try:
        row = _heartbeat(s, pg or postgres_settings(), shard.query_name)
    except DatabaseUnavailable as exc:
        log.warning("event=stream_supervisor_no_database query=%s error=%s", shard.query_name, exc)
        row = None
    beat_age = last_batch_age = None
    batch_id = None
    lag = None
    by_topic: dict[str, int] = {}
    if row:
        _, beat_age, last_batch_age, batch_id = row
        beat_age = float(beat_age) if beat_age is not None else None
        last_batch_age = float(last_batch_age) if last_batch_age is not None else None
        stream = StreamingSettings()
        topics = [stream.ticks_topic, stream.bars_topic, stream.deadletter_topic]
        if batch_id is not None and (shard.checkpoint_dir / "offsets" / str(batch_id)).exists():
            done = checkpoint_offsets(shard.checkpoint_dir, batch_id)
            by_topic = lag_by_topic(end_offsets(topics), done, shard.partitions)
            lag = sum(by_topic.values())
    return Observation(
        proc.pid_file.exists(), pid, started_age, beat_age, last_batch_age, batch_id, lag, by_topic
    )


def judge(o: Observation, s: AirflowSettings) -> tuple[str, str]:
    """(verdict, reason) from one observation."""
    if not o.pid_file:
        return STOPPED, "no pid file: stopped on purpose or never started"
    if o.pid is None:
        return DEAD, "its pid file names no running process"
    if o.started_age_s is not None and o.started_age_s < s.stream_start_grace_s:
        return STARTING, f"started {o.started_age_s:.0f} s ago (grace {s.stream_start_grace_s:.0f} s)"
    if o.beat_age_s is None or o.beat_age_s > s.stream_heartbeat_stale_s:
        age = "none" if o.beat_age_s is None else f"{o.beat_age_s:.0f} s old"
        return HUNG, f"heartbeat {age} (limit {s.stream_heartbeat_stale_s:.0f} s)"
    if o.lag and (o.last_batch_age_s is None or o.last_batch_age_s > s.stream_stuck_s):
        return STUCK, f"lag {o.lag} records and no batch for {o.last_batch_age_s or 0:.0f} s"
    return HEALTHY, f"heartbeat {o.beat_age_s:.0f} s old, lag {o.lag}"


def _restarts_file(s: AirflowSettings, shard: Shard | None = None) -> Path:
    return stream_process(s, shard).home / "restarts.jsonl"


def restarts_in_last_hour(s: AirflowSettings, shard: Shard | None = None) -> int:
    path = _restarts_file(s, shard)
    if not path.exists():
        return 0
    since = time.time() - 3600
    return sum(1 for line in path.read_text().splitlines() if line and json.loads(line)["at"] >= since)


def supervise(
    s: AirflowSettings | None = None, context_ids: tuple[str, str, str] = ("-", "-", "-")
) -> list[Report]:
    """One check of every shard, in shard order; restarts each shard that is dead, hung or stuck
    (within its hourly cap) and leaves the others alone. Shards are checked side by side, so one slow
    stop (up to a minute) does not hold up the others."""
    s = s or airflow_settings()
    each = shards(s)
    with ThreadPoolExecutor(max_workers=len(each)) as pool:
        return list(pool.map(lambda shard: supervise_shard(s, shard, context_ids), each))


def supervise_shard(
    s: AirflowSettings, shard: Shard, context_ids: tuple[str, str, str] = ("-", "-", "-")
) -> Report:
    """One check of one shard; restarts it when it is dead, hung or stuck (within its hourly cap)."""
    dag_id, task_id, run_id = context_ids
    o = observe(s, shard=shard)
    verdict, reason = judge(o, s)
    if verdict in (HEALTHY, STARTING, STOPPED):
        report = Report(verdict, "none", reason, o, query_name=shard.query_name)
    elif restarts_in_last_hour(s, shard) >= s.stream_max_restarts_per_hour:
        report = Report(verdict, "capped", reason, o, query_name=shard.query_name)
        alert(
            "stream_restart_capped",
            f"stream {shard.query_name} is {verdict} ({reason}) but was restarted "
            f"{s.stream_max_restarts_per_hour} times in the last hour: left alone",
            dag_id,
            task_id,
            run_id,
            settings=s,
        )
    else:
        proc = stream_process(s, shard)
        if o.pid is not None:
            proc.stop()
        proc.start()
        new_pid = read_pid(proc.pid_file)
        with _restarts_file(s, shard).open("a") as fh:
            fh.write(
                json.dumps({"at": time.time(), "verdict": verdict, "reason": reason, "pid": new_pid}) + "\n"
            )
        report = Report(verdict, "restarted", reason, o, new_pid, query_name=shard.query_name)
        alert(
            "stream_restart",
            f"stream {shard.query_name} was {verdict} ({reason}): restarted as pid {new_pid}",
            dag_id,
            task_id,
            run_id,
            settings=s,
        )
    log.info(
        "event=stream_supervisor query=%s verdict=%s action=%s reason=%s pid=%s new_pid=%s lag=%s",
        shard.query_name,
        report.verdict,
        report.action,
        json.dumps(report.reason),
        o.pid,
        report.new_pid,
        o.lag,
    )
    return report
