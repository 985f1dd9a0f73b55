"""Every shard's query in one Spark application (`STREAM_SHARDS=N` without `STREAM_SHARD`): one driver,
N streaming queries, each with its own :class:`~spark_streaming.job.StreamingJob` (sink, state cache,
checkpoint, ledger rows, metrics port), run side by side on threads of the one Python driver.

The other way to run N shards is N processes (`STREAM_SHARD=i` in each): N drivers, which can sit on
N machines. docs/SCALING.md compares the two on this machine. Known limit of this one: Spark calls every
listener for every query of the session, so each shard's progress gauges (rates, lag, committed offsets)
mix in the other shards' progress; the sink's counters, heartbeat rows and ledger rows are the shard's own.
"""

from __future__ import annotations

import logging
import signal
import threading

from common.settings import postgres_settings
from spark_streaming.job import StreamingJob, build_session
from spark_streaming.metrics import StreamingMetrics
from spark_streaming.settings import StreamingSettings
from spark_streaming.shards import shard_settings

log = logging.getLogger(__name__)


def run_in_one_application(s: StreamingSettings) -> int:
    """Run shards 0..N-1 of `s` as N queries of one Spark session until SIGTERM/SIGINT; the worst exit
    code of the N."""
    pg = postgres_settings()
    if s.database:
        pg = pg.model_copy(update={"database": s.database})
    spark = build_session(s)
    jobs = []
    for i in range(s.shards):
        shard = shard_settings(s, i)
        metrics = StreamingMetrics()
        metrics.serve(shard.metrics_host, shard.metrics_port)
        jobs.append(StreamingJob(shard, pg, metrics))

    def _signal(signum, _frame) -> None:
        log.info("event=signal signum=%d", signum)
        for job in jobs:
            threading.Thread(target=job.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    codes = [0] * len(jobs)

    def _run(i: int) -> None:
        try:
            codes[i] = jobs[i].run_forever(spark)
        except Exception:
            log.exception("event=shard_failed shard=%d", i)
            codes[i] = 1

    threads = [threading.Thread(target=_run, args=(i,), name=f"shard-{i}") for i in range(len(jobs))]
    log.info("event=shards_starting shards=%d master=%s database=%s", len(jobs), s.master, pg.database)
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():  # join with a timeout: the main thread must stay free to take signals
                t.join(0.5)
        return max(codes)
    finally:
        for job in jobs:
            job.close()
            job.sink.beat("stopped")
            job.sink.close()
        spark.stop()
