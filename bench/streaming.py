"""Streaming job benchmarks: end-to-end latency, highest sustained rate, sink vs psql \\copy, state memory.

Everything runs against the real local stack on a private database (`bench_streaming`) and private
topics, with the job in this process (local[2]) and the load generator in a child process:
- latency: ticks produced at a paced rate with ingest_time = now; the sink measures commit time minus
  ingest time for every committed tick; p50/p95/p99 after a warm-up;
- capacity: a backlog of ticks is produced first, then drained by a fresh query; rows/s of the drain is
  the highest sustainable rate (consumer lag stays bounded below it);
- sink ratio: the sink's transaction (COPY to temp + upsert into raw.ticks) against `psql \\copy` of the
  same rows into a plain copy of raw.ticks, in the same run;
- state memory: indicator state of 5,000 symbols after 250 bars each, and the driver's RSS growth;
- the contract's rules in the parser: parse vs Arrow's block read alone, same process;
- a poison row: the sink's write of 100,000 ticks with one row PostgreSQL refuses vs without it.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from confluent_kafka import Producer

from common.contract import Topic
from common.db import connect
from common.migrate import migrate
from common.settings import kafka_settings, postgres_settings, stack_settings
from ingest.producer import producer_config
from ingest.settings import IngestSettings
from spark_streaming import compute, landing
from spark_streaming import indicators as ind
from spark_streaming import parse as parse_module
from spark_streaming import sink as sink_module
from spark_streaming.feed import create_topics, delete_topics, producer, tick_value
from spark_streaming.job import StreamingJob, build_session, collect_records, kafka_records
from spark_streaming.metrics import StreamingMetrics
from spark_streaming.parse import parse_ticks
from spark_streaming.settings import StreamingSettings
from spark_streaming.sink import BatchFrames, PostgresSink

DATABASE = "bench_streaming"


def _paced_producer(bootstrap: str, topic: str, rate, linger_ms, stop, symbols: int, seed: int) -> None:
    """Ticks at `rate.value` per second (changed by the parent between segments) until `stop` is set,
    each with ingest_time = now; the producer is made again when the parent changes `linger_ms.value`."""
    rng = np.random.default_rng(seed)
    names = [f"B{i:05d}" for i in range(symbols)]
    prices = 100.0 * np.exp(rng.normal(0, 0.3, symbols))

    # the ingest service's own producer settings (linger 20 ms, lz4, idempotent): the latency measured
    # is the product's, from the tick's ingest_time through ingest's batching to the committed row
    def make(linger: int) -> Producer:
        return Producer(producer_config(bootstrap, IngestSettings(linger_ms=linger)))

    linger = linger_ms.value
    p = make(linger)
    last = time.monotonic()
    credit = 0.0
    last_ms = np.zeros(symbols, dtype=np.int64)
    while not stop.is_set():
        if linger_ms.value != linger:
            p.flush(30)
            linger = linger_ms.value
            p = make(linger)
        now_s = time.monotonic()
        credit += rate.value * (now_s - last)
        last = now_s
        due = int(credit)
        if due <= 0:
            time.sleep(0.002)
            p.poll(0)
            continue
        credit -= due
        now = int(time.time() * 1000)
        picks = rng.integers(0, symbols, due)
        prices[picks] *= np.exp(rng.normal(0, 0.0005, due))
        for k in picks.tolist():
            t = max(now, int(last_ms[k]) + 1)
            last_ms[k] = t
            while True:
                try:
                    p.produce(
                        topic,
                        value=tick_value(names[k], t, round(float(prices[k]), 4), 1.0, now),
                        key=names[k].encode(),
                    )
                    break
                except BufferError:
                    p.poll(0.01)
        p.poll(0)
    p.flush(30)


def _backlog_producer(bootstrap: str, topic: str, count: int, symbols: int) -> None:
    p = producer(bootstrap, **{"linger.ms": 20, "batch.size": 1_000_000})
    now = int(time.time() * 1000)
    names = [f"C{i:05d}" for i in range(symbols)]
    for i in range(count):
        k = i % symbols
        t = now - 600_000 + i // symbols * 10
        while True:
            try:
                p.produce(
                    topic,
                    value=tick_value(names[k], t, 100.0 + (i % 97) * 0.01, 1.0, now),
                    key=names[k].encode(),
                )
                break
            except BufferError:
                p.poll(0.01)
        if i % 5000 == 0:
            p.poll(0)
    p.flush(60)


class _Run:
    """A private job on private topics and the bench database, in this process."""

    def __init__(
        self,
        spark,
        tag: str,
        topics: dict[Topic, str],
        ckpt: Path | None = None,
        job_class: type[StreamingJob] = StreamingJob,
        **overrides,
    ) -> None:
        self.keep_ckpt = ckpt is not None  # a checkpoint given is the caller's (a query run in turns)
        self.ckpt = ckpt or Path(tempfile.mkdtemp(prefix=f"bench-ckpt-{tag}-"))
        self.settings = StreamingSettings(
            database=DATABASE,
            ticks_topic=topics[Topic.TICKS],
            bars_topic=topics[Topic.BARS],
            deadletter_topic=topics[Topic.DEADLETTER],
            starting_offsets="earliest",
            checkpoint_dir=self.ckpt,
            query_name=f"bench_{tag}",
            metrics_port=0,
            **overrides,
        )
        pg = postgres_settings().model_copy(update={"database": DATABASE})
        self.job = job_class(self.settings, pg, StreamingMetrics())
        self.job.keep_outcomes = True
        self.thread = threading.Thread(target=self.job.run_forever, args=(spark,), daemon=True)

    def __enter__(self) -> _Run:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.job.stop()
        self.thread.join(60)
        self.job.close()
        self.job.sink.close()
        if not self.keep_ckpt:
            shutil.rmtree(self.ckpt, ignore_errors=True)


def _topics(tag: str) -> dict[Topic, str]:
    return {
        Topic.TICKS: f"bench.ticks.{tag}",
        Topic.BARS: f"bench.bars.{tag}",
        Topic.DEADLETTER: f"bench.dl.{tag}",
    }


def _processes() -> dict[str, list[psutil.Process]]:
    """The job's Python process, its Spark JVM, and the stack's own PostgreSQL (postmaster on the stack's
    port and its backends) and Kafka broker (its server.properties under the stack's state folder);
    other suites' private servers on the same machine are not counted."""
    me = psutil.Process()
    pg_port = f"port={postgres_settings().port}"
    kafka_conf = str(stack_settings().state_dir / "kafka")
    groups: dict[str, list[psutil.Process]] = {
        "python": [me],
        "spark_jvm": [c for c in me.children(recursive=True) if c.name() == "java"],
        "postgres": [],
        "kafka": [],
    }
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        try:
            if p.info["name"] == "postgres" and pg_port in cmd and " -D " in cmd:
                groups["postgres"] += [p, *p.children()]
            elif p.info["name"] == "java" and "kafka.Kafka" in cmd and kafka_conf in cmd:
                groups["kafka"].append(p)
        except psutil.Error:
            pass
    return groups


def _cpu_seconds(groups: dict[str, list[psutil.Process]] | None = None) -> dict[str, float]:
    """CPU seconds (user + system, from /proc/<pid>/stat) used so far by each group of processes.
    Backends that started after `groups` was listed are not in it: list again per window."""
    out = {}
    for name, procs in (groups or _processes()).items():
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        out[name] = total
    return out


def _pct(values, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if len(values) else None


def _latencies_s(outcomes) -> np.ndarray:
    parts = [o.latencies_ms for o in outcomes if len(o.latencies_ms)]
    return np.concatenate(parts) / 1e3 if parts else np.empty(0)


class _PlanPerBatchJob(StreamingJob):
    """The job as it was before issue 14's fourth run: the Kafka rows shaped (select, coalesce) by the
    handler, so every batch analysed a new plan through py4j; the query's plan is the bare source."""

    def stream_records(self, source):
        return source

    def batch_records(self, df):
        return collect_records(kafka_records(df, self.settings.collect_tasks))


@dataclass(frozen=True)
class Variant:
    """One arm of the latency A/B: the job's class, its settings, and the producer's linger.ms."""

    job: type[StreamingJob] = StreamingJob
    settings: dict = field(default_factory=dict)
    linger_ms: int = IngestSettings().linger_ms


VARIANTS: dict[str, Variant] = {
    # the first is the baseline the others are divided by. The earlier A/Bs (fetch wait 10 against
    # 0 ms; every batch written while Spark reads the next, spark_streaming/pipeline.py; 2 collecting
    # tasks) are in docs/STREAMING.md
    "default": Variant(),
    "plan_per_batch": Variant(job=_PlanPerBatchJob),
    "linger_5ms": Variant(linger_ms=5),
}
"""The A/B of the latency benchmark, alternated on the same query (one checkpoint, one JVM)."""

SERIAL_SINK = {"pipeline_min_rows": 2**31 - 1}
"""Every batch written before Spark commits it: the drain's baseline against the pipelined default."""

_SPARK_STEPS = ("latestOffset", "getBatch", "queryPlanning", "walCommit", "addBatch", "commitOffsets")


class _Series:
    """One query on private topics, run in segments of alternating settings in this process's JVM
    (same checkpoint: the query, its state and the warmed code carry over from segment to segment),
    fed by a paced producer whose rate the segments set."""

    def __init__(self, spark, symbols: int) -> None:
        self.spark = spark
        self.tag = uuid.uuid4().hex[:8]
        self.topics = _topics(self.tag)
        self.bootstrap = kafka_settings().bootstrap_servers
        self.ckpt = Path(tempfile.mkdtemp(prefix=f"bench-ckpt-{self.tag}-"))
        ctx = mp.get_context("spawn")
        self.rate = ctx.Value("d", 0.0)
        self.linger_ms = ctx.Value("i", IngestSettings().linger_ms)
        self.stop = ctx.Event()
        self.producer = ctx.Process(
            target=_paced_producer,
            args=(self.bootstrap, self.topics[Topic.TICKS], self.rate, self.linger_ms, self.stop, symbols, 7),
        )
        # Spark keeps the last 100 progress reports per query: fewer than a segment's batches
        spark.conf.set("spark.sql.streaming.numRecentProgressUpdates", "5000")

    def __enter__(self) -> _Series:
        create_topics(self.bootstrap, self.topics, brokers=kafka_settings().nodes)
        self.producer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.producer.join(60)
        delete_topics(self.bootstrap, self.topics.values())
        shutil.rmtree(self.ckpt, ignore_errors=True)

    def run(self, variant: str) -> _Run:
        v = VARIANTS[variant]
        self.linger_ms.value = v.linger_ms
        return _Run(self.spark, self.tag, self.topics, ckpt=self.ckpt, job_class=v.job, **v.settings)

    def segment(self, rate: float, variant: str, settle_s: float, measure_s: float) -> dict:
        """Run the query with `variant`'s settings at `rate` ticks/s; measure `measure_s` seconds once it
        has committed a batch and `settle_s` more (the restart's backlog) have passed."""
        self.rate.value = rate
        with self.run(variant) as run:
            _wait(lambda: any(o.fresh_ticks for o in run.job.outcomes), 180)
            time.sleep(settle_s)
            groups = _processes()
            cpu0, n0, t0 = _cpu_seconds(groups), len(run.job.outcomes), time.time()
            time.sleep(measure_s)
            cpu1, n1, t1 = _cpu_seconds(groups), len(run.job.outcomes), time.time()
            outcomes = [o for o in run.job.outcomes[n0:n1] if not o.skipped]
            progress = [json.loads(p.json()) for p in run.job._query._jsq.recentProgress()]
        batches = max(1, n1 - n0)
        ends = [_epoch(p["timestamp"]) + p["durationMs"].get("triggerExecution", 0) / 1e3 for p in progress]
        return {
            "outcomes": outcomes,
            "progress": [p for p, end in zip(progress, ends, strict=True) if t0 <= end <= t1],
            "seconds": t1 - t0,
            "cpu_ms_per_batch": {k: (cpu1[k] - cpu0[k]) * 1000 / batches for k in cpu0},
            "cpu_ms_per_s": {k: (cpu1[k] - cpu0[k]) * 1000 / (t1 - t0) for k in cpu0},
        }


def _epoch(timestamp: str) -> float:
    return pd.Timestamp(timestamp).timestamp()


def _summary(segments: list[dict]) -> dict:
    """Latency percentiles, the cycle and its parts, CPU per batch: over the segments of one rate and
    variant (pooled), with each segment's p95 to show the spread."""
    outcomes = [o for seg in segments for o in seg["outcomes"]]
    progress = [p for seg in segments for p in seg["progress"]]
    lat = _latencies_s(outcomes)
    steps = sorted({k for o in outcomes for k in o.steps})
    cycle = [p["durationMs"].get("triggerExecution", 0) for p in progress]
    seconds = sum(seg["seconds"] for seg in segments)

    def mean_of(key: str) -> dict:
        return {k: round(float(np.mean([seg[key][k] for seg in segments])), 1) for k in segments[0][key]}

    return {
        "latency_p50_s": _pct(lat, 50),
        "latency_p95_s": _pct(lat, 95),
        "latency_p99_s": _pct(lat, 99),
        "latency_max_s": round(float(lat.max()), 3) if len(lat) else None,
        "latency_p95_s_per_segment": [_pct(_latencies_s(seg["outcomes"]), 95) for seg in segments],
        "ticks": len(lat),
        "batches": len(outcomes),
        "rows_per_batch_mean": round(float(np.mean([o.input_rows for o in outcomes])), 1)
        if outcomes
        else None,
        "batches_per_s": round(len(outcomes) / seconds, 2) if seconds else None,
        "cycle_ms_p50": _pct(cycle, 50),
        "cycle_ms_p95": _pct(cycle, 95),
        # the cycle's parts, ms per batch: Spark's own steps from the query's progress reports (addBatch
        # is the foreachBatch handler) and the handler's (collect, parse, the sink by step)
        "spark_ms_p50": {k: _pct([p["durationMs"].get(k, 0) for p in progress], 50) for k in _SPARK_STEPS},
        "handler_ms_p50": {k: _pct([o.steps.get(k, 0.0) * 1e3 for o in outcomes], 50) for k in steps},
        "handler_ms_mean": {
            k: round(float(np.mean([o.steps.get(k, 0.0) * 1e3 for o in outcomes])), 2) for k in steps
        },
        "cpu_ms_per_batch": mean_of("cpu_ms_per_batch"),
        "cpu_ms_per_s": mean_of("cpu_ms_per_s"),
    }


def _warm_up(series: _Series, rate: float, window_s: float, max_s: float, variant: str) -> dict:
    """Run the query at `rate` until the Spark JVM's CPU per batch is steady: the last three windows
    within 15 % of their mean (the JVM keeps compiling for 10+ minutes). Returns the windows and how
    long it took, or that `max_s` ran out first."""
    started = time.monotonic()
    windows: list[dict] = []
    steady = False
    series.rate.value = rate
    with series.run(variant) as run:
        _wait(lambda: any(o.fresh_ticks for o in run.job.outcomes), 180)
        while time.monotonic() - started < max_s:
            groups = _processes()
            cpu0, n0 = _cpu_seconds(groups), len(run.job.outcomes)
            time.sleep(window_s)
            cpu1, n1 = _cpu_seconds(groups), len(run.job.outcomes)
            b = max(1, n1 - n0)
            windows.append(
                {
                    "at_s": round(time.monotonic() - started),
                    "batches": n1 - n0,
                    "spark_jvm_cpu_ms_per_batch": round(
                        (cpu1["spark_jvm"] - cpu0["spark_jvm"]) * 1000 / b, 1
                    ),
                    "python_cpu_ms_per_batch": round((cpu1["python"] - cpu0["python"]) * 1000 / b, 1),
                    "latency_p95_s": _pct(_latencies_s(run.job.outcomes[n0:n1]), 95),
                }
            )
            last = [w["spark_jvm_cpu_ms_per_batch"] for w in windows[-3:]]
            if len(last) == 3 and (max(last) - min(last)) <= 0.15 * float(np.mean(last)):
                steady = True
                break
    return {
        "rate_ticks_per_s": rate,
        "window_s": window_s,
        "steady": steady,
        "seconds": round(time.monotonic() - started),
        "windows": windows,
    }


def _latency(spark, quick: bool) -> dict:
    """Tick -> PostgreSQL latency per rate, the A/B of VARIANTS alternated inside one JVM on one query,
    after a warm-up until the JVM's CPU per batch is steady."""
    symbols = 1_000
    rates = (200, 1_000, 5_000)
    window_s, max_warm_s = (15, 90) if quick else (30, 900)
    settle_s, measure_s, rounds = (6, 15, 1) if quick else (8, 30, 2)
    names = list(VARIANTS)
    with _Series(spark, symbols) as series:
        warm = _warm_up(series, 5_000, window_s, max_warm_s, names[0])
        segments: dict[tuple[float, str], list[dict]] = {}
        for rate in rates:
            for r in range(rounds):
                for variant in names if r % 2 == 0 else names[::-1]:
                    segments.setdefault((rate, variant), []).append(
                        series.segment(rate, variant, settle_s, measure_s)
                    )
    out: dict = {"warm_up": warm, "symbols": symbols, "segment_s": measure_s, "rounds": rounds}
    for rate in rates:
        by_variant = {v: _summary(segments[(rate, v)]) for v in names}
        base = by_variant[names[0]]
        keys = ("latency_p50_s", "latency_p95_s", "latency_p99_s", "cycle_ms_p50")
        ratios = {
            f"ratio_{v}_to_{names[0]}": {
                k: round(by_variant[v][k] / base[k], 3) for k in keys if base[k] and by_variant[v][k]
            }
            for v in names[1:]
        }
        out[f"rate_{rate}"] = {**by_variant, **ratios}
    return out


def _capacity(spark, count: int, symbols: int, **overrides) -> dict:
    """Drain a backlog of `count` ticks in 100,000-record batches: the highest sustained rate."""
    tag = uuid.uuid4().hex[:8]
    topics = _topics(tag)
    bootstrap = kafka_settings().bootstrap_servers
    create_topics(bootstrap, topics)
    try:
        proc = mp.get_context("spawn").Process(
            target=_backlog_producer, args=(bootstrap, topics[Topic.TICKS], count, symbols)
        )
        proc.start()
        proc.join(600)
        with _Run(spark, tag, topics, max_offsets_per_trigger=100_000, **overrides) as run:
            _wait(lambda: sum(o.fresh_ticks for o in run.job.outcomes) >= count, 900)
            outcomes = list(run.job.outcomes)
        # the first batch includes the query's compile and state load: measure from the end of it
        committed = [o for o in outcomes if not o.skipped and o.fresh_ticks]
        first_end = committed[0]
        rest = committed[1:]
        ticks = sum(o.fresh_ticks for o in rest)
        span = sum(o.seconds for o in rest)  # sink time only, lower bound of the batch time
        wall = (rest[-1].finished_at - first_end.finished_at) if rest else float("nan")
        return {
            "backlog_ticks": count,
            "symbols": symbols,
            "drain_ticks_per_s": round(ticks / wall) if wall > 0 else None,
            "sink_only_ticks_per_s": round(ticks / span) if span > 0 else None,
            "batches": len(committed),
            "rows_per_batch_mean": round(float(np.mean([o.fresh_ticks for o in rest])), 1) if rest else None,
            "goal_ticks_per_s": 20_000,
        }
    finally:
        delete_topics(bootstrap, topics.values())


def _sink_ratio(rows: int) -> dict:
    """Sink transaction vs psql \\copy of the same tick rows, best of 3 each, same run."""
    pg = postgres_settings().model_copy(update={"database": DATABASE})
    now = int(time.time() * 1000) - 3_600_000
    frame = _synthetic_ticks(rows, 1000, now)
    conn = connect("admin", pg)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("drop table if exists public.bench_ticks_copy")
    cur.execute("create table public.bench_ticks_copy (like raw.ticks including defaults including indexes)")
    csv_path = Path(tempfile.mkdtemp()) / "ticks.csv"
    out = frame.copy()
    out["event_time"] = pd.to_datetime(out["event_time_ms"], unit="ms", utc=True)
    out["ingest_time"] = pd.to_datetime(out["ingest_time_ms"], unit="ms", utc=True)
    cols = [
        "symbol",
        "event_time",
        "price",
        "size",
        "source",
        "ingest_time",
        "kafka_partition",
        "kafka_offset",
    ]
    out[cols].to_csv(csv_path, index=False, header=False)
    psql = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))[-1]
    env = {**os.environ, "PGPASSWORD": pg.admin_password.get_secret_value()}
    psql_times, sink_times = [], []
    for _ in range(3):
        cur.execute("truncate public.bench_ticks_copy")
        t = time.perf_counter()
        subprocess.run(
            [
                str(psql),
                "-h",
                pg.host,
                "-p",
                str(pg.port),
                "-U",
                pg.admin_user,
                "-d",
                DATABASE,
                "-q",
                "-c",
                f"\\copy public.bench_ticks_copy ({', '.join(cols)}) from '{csv_path}' csv",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        psql_times.append(time.perf_counter() - t)
    for _ in range(3):
        cur.execute("delete from raw.ticks where symbol like 'S____' and source = 'synthetic'")
        sink = _bench_sink(pg, "bench_sink")
        t = time.perf_counter()
        sink.write(
            0,
            BatchFrames(
                ticks=frame,
                bars=pd.DataFrame(),
                dead=pd.DataFrame(),
                input_rows=rows,
            ),
        )
        sink_times.append(time.perf_counter() - t)
        sink.close()
    land_times = []
    wconn = connect("writer", pg)
    for _ in range(3):
        cur.execute("delete from raw.ticks where symbol like 'S____' and source = 'synthetic'")
        t = time.perf_counter()
        with wconn, wconn.cursor() as wcur:  # the landing step alone: COPY to temp + deduplicating insert
            wcur.execute(sink_module._TEMP_TABLES)
            landing.land_ticks(wcur, frame)
        land_times.append(time.perf_counter() - t)
    wconn.close()
    cur.execute("delete from raw.ticks where symbol like 'S____' and source = 'synthetic'")
    cur.execute("drop table public.bench_ticks_copy")
    conn.close()
    shutil.rmtree(csv_path.parent, ignore_errors=True)
    return {
        "rows": rows,
        "psql_copy_rows_per_s": round(rows / min(psql_times)),
        "sink_full_batch_rows_per_s": round(rows / min(sink_times)),
        "ratio_full_batch_to_psql_copy": round(min(psql_times) / min(sink_times), 3),
        "landing_rows_per_s": round(rows / min(land_times)),
        "ratio_landing_to_psql_copy": round(min(psql_times) / min(land_times), 3),
        "goal_ratio": 0.7,
    }


def _bench_sink(pg, name: str) -> PostgresSink:
    """A sink of a fresh query id (so no batch is skipped by the ledger) with the default settings."""
    s = StreamingSettings()
    return PostgresSink(
        pg,
        name,
        lambda: f"{name}-{uuid.uuid4()}",
        s.allowed_lateness_ms,
        s.idle_close_ms,
        ind.SignalThresholds(),
        database=DATABASE,
    )


def _synthetic_ticks(rows: int, symbols: int, now: int) -> pd.DataFrame:
    """Sink input: `rows` valid ticks over `symbols` symbols, one millisecond apart per symbol."""
    rng = np.random.default_rng(3)
    names = np.array([f"S{i:04d}" for i in range(symbols)], dtype=object)
    return pd.DataFrame(
        {
            "symbol": names[np.arange(rows) % symbols],
            "event_time_ms": now + np.arange(rows) // symbols,
            "price": 100 + rng.random(rows),
            "size": np.ones(rows),
            "bid": np.nan,
            "ask": np.nan,
            "day_volume": np.nan,
            "currency": None,
            "exchange": None,
            "source": "synthetic",
            "ingest_time_ms": now,
            "kafka_topic": "bench",
            "kafka_partition": 0,
            "kafka_offset": np.arange(rows),
            "kafka_ms": now,
            "value": None,
        }
    )


def _parse_cost(rows: int, rounds: int = 5) -> dict:
    """The contract's rules in the stream's parser: ``parse_ticks`` on a batch of encoded ticks against
    the block read alone (Arrow's JSON reader with the contract's schema, no rule judged), the floor
    of any parser of this design. Same process, the two alternated, best of `rounds` each."""
    now = int(time.time() * 1000)
    values = [tick_value(f"S{i % 1000:04d}", now - rows + i, 100.0 + i % 7, 1.0, now) for i in range(rows)]
    records = pd.DataFrame(
        {
            "kafka_topic": "bench",
            "kafka_partition": 0,
            "kafka_offset": np.arange(rows),
            "kafka_ms": now,
            "key": [v.split(b'"symbol":"')[1][:5] for v in values],
            "value": values,
        }
    )
    full, floor = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        valid, refused = parse_ticks(records, 5_000)
        full.append(time.perf_counter() - t)
        assert len(valid) == rows and refused.empty
        t = time.perf_counter()
        parse_module.read_block(values, Topic.TICKS)
        floor.append(time.perf_counter() - t)
    return {
        "rows": rows,
        "parse_rows_per_s": round(rows / min(full)),
        "block_read_rows_per_s": round(rows / min(floor)),
        "rules_us_per_row": round((min(full) - min(floor)) / rows * 1e6, 3),
        "ratio_parse_to_block_read": round(min(floor) / min(full), 3),
    }


def _poison_cost(rows: int, rounds: int = 3) -> dict:
    """What one row PostgreSQL refuses costs a batch: the sink's write of `rows` valid ticks, against
    the same batch with one row PostgreSQL refuses (a NUL in its exchange, put past the parser on
    purpose) in the middle, which the sink finds by bisection in careful mode. Same run, alternated."""
    pg = postgres_settings().model_copy(update={"database": DATABASE})
    conn = connect("admin", pg)
    conn.autocommit = True
    cur = conn.cursor()
    clean_times, poisoned_times, refused = [], [], 0
    for _ in range(rounds):
        for poisoned in (False, True):
            now = int(time.time() * 1000) - 3_600_000
            frame = _synthetic_ticks(rows, 1000, now)
            if poisoned:
                frame.loc[rows // 2, "exchange"] = "X\x00Y"
                frame.loc[rows // 2, "value"] = b"{}"
            cur.execute("delete from raw.ticks where symbol like 'S____' and source = 'synthetic'")
            cur.execute("delete from raw.dead_letters where kafka_topic = 'bench'")
            sink = _bench_sink(pg, "bench_poison")
            frames = BatchFrames(ticks=frame, bars=pd.DataFrame(), dead=pd.DataFrame(), input_rows=rows)
            t = time.perf_counter()
            outcome = sink.write(0, frames)
            (poisoned_times if poisoned else clean_times).append(time.perf_counter() - t)
            sink.close()
            if poisoned:
                assert (
                    outcome.careful and outcome.refused_by_database == 1 and outcome.fresh_ticks == rows - 1
                )
                refused += 1
    cur.execute("delete from raw.ticks where symbol like 'S____' and source = 'synthetic'")
    cur.execute("delete from raw.dead_letters where kafka_topic = 'bench'")
    conn.close()
    return {
        "rows": rows,
        "clean_batch_s": round(min(clean_times), 3),
        "poisoned_batch_s": round(min(poisoned_times), 3),
        "cost_of_one_poison_row_s": round(min(poisoned_times) - min(clean_times), 3),
        "ratio_poisoned_to_clean": round(min(poisoned_times) / min(clean_times), 2),
        "goal_cost_s": 2.0,
    }


def _state_memory(symbols: int, bars: int) -> dict:
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    states = compute.SymbolStates()
    rows = states.rows(np.array([f"M{i:05d}" for i in range(symbols)], dtype=object))
    rng = np.random.default_rng(5)
    close = 100.0 * np.ones(symbols)
    t = time.perf_counter()
    for _ in range(bars):
        close = close * np.exp(rng.normal(0, 0.001, symbols))
        bar = ind.Bars(open=close, close=close, volume=np.ones(symbols), pv=close, day=np.zeros(symbols))
        new, _ = ind.step(states.matrix[rows], bar)
        states.matrix[rows] = new
    per_step = (time.perf_counter() - t) / bars
    rss1 = proc.memory_info().rss
    return {
        "symbols": symbols,
        "state_mib": round(states.nbytes() / 2**20, 2),
        "rss_growth_mib": round((rss1 - rss0) / 2**20, 1),
        "step_all_symbols_ms": round(per_step * 1000, 2),
        "goal_mib": 1024,
    }


def _wait(check, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError("benchmark condition not reached in time")


def run(quick: bool = False) -> dict:
    migrate(postgres_settings().model_copy(update={"database": DATABASE}))
    results: dict = {"state_memory": _state_memory(5_000, 250)}
    results["sink_vs_psql_copy"] = _sink_ratio(100_000 if quick else 500_000)
    results["parse_strict_rules"] = _parse_cost(20_000 if quick else 50_000)
    results["poison_row_in_batch"] = _poison_cost(100_000, 1 if quick else 3)
    spark = build_session(StreamingSettings())
    try:
        results["latency"] = _latency(spark, quick)
        backlog = 300_000 if quick else 1_500_000
        # the default (batches this big are written while Spark reads the next), then every batch
        # written before Spark commits it: the pipelined sink's gain on a backlog, same JVM
        results["capacity"] = _capacity(spark, backlog, 1_000)
        results["capacity_serial_sink"] = _capacity(spark, backlog, 1_000, **SERIAL_SINK)
    finally:
        spark.stop()
    return results
