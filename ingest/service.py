"""Wiring: settings + instruments + producer + pipeline, SIGTERM handling, and the Python API."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

from common.contract import Source, Topic
from common.settings import kafka_settings
from ingest.errors import BrokerUnavailable, IngestError
from ingest.instruments import Instruments, load_instruments
from ingest.pipeline import Pipeline, RunStats
from ingest.producer import KafkaSink, check_broker
from ingest.settings import IngestSettings, ingest_settings
from ingest.sources.base import RawRecord
from ingest.sources.synthetic import GbmParams, SyntheticSource

log = logging.getLogger("ingest.service")


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """Set `stop` on SIGTERM / SIGINT (main thread only) so the run ends and the producer flushes."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, _frame: object) -> None:
        log.info("event=signal signal=%s action=stop_and_flush", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def metrics_sync(
    pipeline: Pipeline,
    source: Source,
    interval_s: float = 1.0,
    stop: threading.Event | None = None,
) -> Iterator[None]:
    """While the block runs, a daemon thread serves the producer's delivery reports and moves the
    pipeline's tallies into the Prometheus counters every `interval_s`, so the counters keep up even
    when the source is idle (a quiet live stream) or between the run loop's own syncs.

    When the spill cannot be written (SpillError) the thread sets `stop` and ends: the run stops and
    its own poll / flush raises the error."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(interval_s):
            try:
                pipeline.sink.poll(0)
                pipeline.sync_metrics(source.value)
            except IngestError as exc:
                log.critical("event=metrics_sync_stopped error=%s", exc)
                if stop is not None:
                    stop.set()
                return

    thread = threading.Thread(target=loop, name="ingest-metrics-sync", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(interval_s + 5)


def build_pipeline(
    source: Source,
    *,
    bootstrap: str | None = None,
    settings: IngestSettings | None = None,
    instruments: Instruments | None = None,
    topics: Mapping[Topic, str] | None = None,
    live: bool = True,
    check: bool = True,
) -> Pipeline:
    """A pipeline writing to Kafka at `bootstrap` (default from KAFKA_BOOTSTRAP_SERVERS)."""
    settings = settings or ingest_settings()
    bootstrap = bootstrap or kafka_settings().bootstrap_servers
    if check:
        wanted = {t: (topics or {}).get(t, t.value) for t in Topic}
        check_broker(bootstrap, sorted(set(wanted.values())))
    if instruments is None:
        instruments = load_instruments(settings.instruments_file)
    sink = KafkaSink(bootstrap, settings, source=source.value)  # SpillError when the spill is unwritable
    resent = sink.resend_spill()  # what an earlier run could not deliver goes first
    if resent:
        log.warning("event=spill_resent records=%d", resent)
    return Pipeline(sink, settings, instruments, topics=topics, live=live)


def finish_run(pipeline: Pipeline, source: Source, flush_timeout_s: float = 60.0) -> int:
    """Flush (what is still pending then goes to the spill) and, when this run spilled records and
    Kafka answers again, re-send them now rather than at the next start. Returns the records still in
    the producer (0 unless a purge's reports did not come)."""
    remaining = pipeline.finish(source.value, flush_timeout_s)
    sink = pipeline.sink
    if sink.spill.own:
        try:
            check_broker(sink.bootstrap, timeout_s=5.0)
        except BrokerUnavailable:
            log.warning(
                "event=spill_kept records=%d folder=%s (Kafka does not answer: re-sent at the next start)",
                sink.spill.pending,
                sink.spill.folder,
            )
            sink.spill.close()
            return remaining
        resent = sink.resend_spill(include_own=True)
        sink.flush(flush_timeout_s)
        log.warning("event=spill_resent records=%d still_spilled=%d", resent, sink.spill.pending)
    sink.spill.close()
    return remaining


def run_records(
    pipeline: Pipeline,
    records: Iterable[RawRecord],
    source: Source,
    on_progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> RunStats:
    """Run a source through a pipeline until it ends or SIGTERM; always flushes the producer."""
    stop = stop or threading.Event()
    with stop_on_signals(stop), metrics_sync(pipeline, source, stop=stop):
        try:
            pipeline.run(records, stop=stop, on_progress=on_progress)
        finally:
            finish_run(pipeline, source)
    return pipeline.stats


def produce_synthetic(
    rate: float,
    duration_s: float | None = None,
    *,
    count: int | None = None,
    symbols: list[str] | int = 50,
    seed: int = 42,
    paced: bool = True,
    bootstrap: str | None = None,
    topics: Mapping[Topic, str] | None = None,
    settings: IngestSettings | None = None,
    params: GbmParams | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[int], None] | None = None,
    flush_timeout_s: float = 60.0,
) -> RunStats:
    """Produce synthetic ticks to Kafka at `rate` ticks/s for `duration_s` seconds (or `count` ticks).

    The load generator of the benchmarks and the demo: ``produce_synthetic(5_000, 60)``. At the end it
    waits up to `flush_timeout_s` for Kafka to acknowledge what is still queued.
    """
    source = SyntheticSource(
        symbols, rate=rate, seed=seed, count=count, duration_s=duration_s, paced=paced, params=params
    )
    settings = settings or ingest_settings()
    instruments = source.instruments()
    pipeline = build_pipeline(
        Source.SYNTHETIC, bootstrap=bootstrap, settings=settings, instruments=instruments, topics=topics
    )
    stop = stop or threading.Event()
    with stop_on_signals(stop), metrics_sync(pipeline, Source.SYNTHETIC, stop=stop):
        try:
            pipeline.run_arrays(source.arrays(), Source.SYNTHETIC, stop=stop, on_progress=on_progress)
        finally:
            source.close()
            finish_run(pipeline, Source.SYNTHETIC, flush_timeout_s)
    return pipeline.stats
