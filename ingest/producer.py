"""The Kafka producer: idempotent, acks=all, compressed, key = symbol, counted delivery callbacks; what
Kafka does not acknowledge is kept in the spill (:mod:`ingest.spill`) and re-sent."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from ingest import metrics
from ingest.errors import BrokerUnavailable, SpillError
from ingest.settings import IngestSettings
from ingest.spill import CorruptSpill, Spill

log = logging.getLogger("ingest.producer")
_LATENCY_MASK = 15  # observe 1 delivery in 16


def producer_config(bootstrap: str, settings: IngestSettings) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": settings.compression,
        "linger.ms": settings.linger_ms,
        "batch.size": settings.batch_size_bytes,
        "queue.buffering.max.messages": settings.queue_max_messages,
        "message.timeout.ms": settings.delivery_timeout_ms,
        "client.id": "ingest",
        "logger": logging.getLogger("ingest.librdkafka"),
    }


def check_broker(bootstrap: str, topics: list[str] | None = None, timeout_s: float = 10.0) -> None:
    """Raise BrokerUnavailable when no broker answers at `bootstrap` or one of `topics` is missing."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
    try:
        meta = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerUnavailable(
            f"Kafka at {bootstrap} did not answer within {timeout_s:.0f}s ({exc.args[0].str()}); "
            "is the stack up (`make up`) and KAFKA_BOOTSTRAP_SERVERS right?"
        ) from exc
    if not meta.brokers:
        raise BrokerUnavailable(f"Kafka at {bootstrap} reports no brokers")
    missing = [t for t in topics or [] if t not in meta.topics]
    if missing:
        raise BrokerUnavailable(
            f"topic(s) {', '.join(missing)} do not exist on {bootstrap}; "
            "`make up` creates the contract topics (tests and benchmarks create their own)"
        )


@dataclass
class DeliveryStats:
    delivered: Tally = field(default_factory=Tally)
    failed: Tally = field(default_factory=Tally)
    errors: Tally = field(default_factory=Tally)


class KafkaSink:
    """One producer per process. ``send`` never drops: a full queue is served by polling (back-pressure);
    a record Kafka does not acknowledge (delivery error, or still pending when ``flush`` times out) is
    written to the spill, and :meth:`resend_spill` sends spilled records again.

    Delivery callbacks run in whichever thread serves the producer (``poll`` / ``flush``); a lock lets
    one thread at a time do so, so a metrics thread may serve it while the run is idle.
    """

    def __init__(self, bootstrap: str, settings: IngestSettings, source: str = "unknown") -> None:
        self.bootstrap = bootstrap
        self.source = source
        self.settings = settings
        self.spill = Spill(
            settings.spill_dir, bootstrap, settings.spill_fsync_records, settings.spill_fsync_interval_s
        )  # raises SpillError at once when the spill folder cannot be written
        self._fatal: SpillError | None = None  # a spill write failed: raised by poll / flush
        self._unkept = 0  # records that could be neither delivered nor spilled
        self._producer = Producer(producer_config(bootstrap, settings))
        self._delivered: dict[str, list[int]] = {}  # topic -> [count], bumped by that topic's callback
        self._callbacks: dict[str, Callable[[KafkaError | None, Message], None]] = {}
        self._failures = DeliveryStats()
        self._sent = 0
        self._synced = DeliveryStats()
        self._serve_lock = threading.Lock()
        self._sync_lock = threading.Lock()

    @property
    def stats(self) -> DeliveryStats:
        """Delivered and failed records by topic, and failures by error name, so far (a snapshot)."""
        # list(dict.items()) and dict(dict) copy in one step under the GIL: safe from another thread
        delivered = Tally({topic: cell[0] for topic, cell in list(self._delivered.items()) if cell[0]})
        return DeliveryStats(
            delivered, Tally(dict(self._failures.failed)), Tally(dict(self._failures.errors))
        )

    def _callback(self, topic: str) -> Callable[[KafkaError | None, Message], None]:
        """The delivery callback of one topic: a success costs one increment (it runs per record)."""
        callback = self._callbacks.get(topic)
        if callback is not None:
            return callback
        cell = self._delivered.setdefault(topic, [0])
        observe = metrics.PRODUCE_LATENCY.labels(topic).observe
        failed = self._on_failure

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                cell[0] += 1
                if not cell[0] & _LATENCY_MASK:
                    latency = msg.latency()
                    if latency is not None:
                        observe(latency)
            else:
                failed(topic, err, msg)

        self._callbacks[topic] = on_delivery
        return on_delivery

    def _on_failure(self, topic: str, err: KafkaError, msg: Message) -> None:
        stats = self._failures
        stats.failed[topic] += 1
        stats.errors[err.name()] += 1
        failed = stats.failed[topic]
        if failed <= 10 or failed % 10_000 == 0:  # the counter has them all; the log shows a sample
            log.error(
                "event=delivery_failed topic=%s key=%s error=%s failed_so_far=%d",
                topic,
                msg.key(),
                err.str(),
                failed,
            )
        if self._fatal is None:
            try:
                self.spill.append(topic, msg.key(), msg.value(), err.name())
                return
            except SpillError as exc:  # raised by the next poll / flush: a callback must not raise
                self._fatal = exc
                log.critical("event=spill_failed error=%s", exc)
        self._unkept += 1
        log.critical(
            "event=record_not_kept topic=%s key=%s error=%s not_kept_so_far=%d",
            topic,
            msg.key(),
            err.name(),
            self._unkept,
        )

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        """Queue one record; when the local queue is full, serve callbacks until there is room."""
        callback = self._callbacks.get(topic) or self._callback(topic)
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=callback)
                break
            except BufferError:
                metrics.BACKPRESSURE.inc()
                self.poll(0.05)
        self._sent += 1
        if self._sent & 1023 == 0:
            self.poll(0)

    def send_many(self, topic: str, keys: list[bytes], values: list[bytes]) -> None:
        """Queue records in order (same guarantees as :meth:`send`, less overhead per record)."""
        produce, poll, callback = self._producer.produce, self.poll, self._callback(topic)
        sent = self._sent
        for key, value in zip(keys, values, strict=True):
            try:
                produce(topic, value, key, on_delivery=callback)
            except BufferError:
                while True:
                    metrics.BACKPRESSURE.inc()
                    poll(0.05)
                    try:
                        produce(topic, value, key, on_delivery=callback)
                        break
                    except BufferError:
                        continue
            sent += 1
            if not sent & 1023:
                poll(0)
        self._sent = sent

    def poll(self, timeout_s: float = 0) -> None:
        """Serve delivery callbacks (waiting up to `timeout_s` for one)."""
        with self._serve_lock:
            self._producer.poll(timeout_s)
        self._raise_if_fatal()

    def flush(self, timeout_s: float = 60.0) -> int:
        """Wait for every queued record to be acknowledged; what is still pending after `timeout_s`
        is purged from the producer and written to the spill. Returns how many records are still in
        the producer after that (0 unless the purge's reports did not come in time)."""
        deadline = time.monotonic() + timeout_s
        remaining = len(self._producer)
        while remaining and time.monotonic() < deadline:
            with self._serve_lock:
                remaining = self._producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        if remaining:
            # purged records get a delivery report with _PURGE_QUEUE / _PURGE_INFLIGHT: they are spilled
            # (in flight ones may have been written by the broker all the same: a possible duplicate)
            log.warning("event=flush_incomplete pending=%d timeout_s=%.1f action=spill", remaining, timeout_s)
            with self._serve_lock:
                self._producer.purge(in_queue=True, in_flight=True, blocking=True)
                purge_deadline = time.monotonic() + 30
                while remaining and time.monotonic() < purge_deadline:
                    remaining = self._producer.flush(1.0)
            if remaining:
                log.error("event=purge_incomplete pending=%d", remaining)
        self.spill.sync()
        self.sync_metrics()
        self._raise_if_fatal()
        return remaining

    def resend_spill(self, include_own: bool = False) -> int:
        """Send the spilled records of this bootstrap again, file by file, oldest first, each file in
        its order (so per topic and key too), before anything new; returns how many Kafka acknowledged.

        A file is removed once each of its records was acknowledged or, failing again, spilled again
        (fsync'd); files another living process holds (its writer or a re-sender) are left alone. With
        `include_own` this process's current file is closed and re-sent too (at the end of a run).
        """
        if include_own:
            self.spill.rotate()
        acknowledged = 0
        for path in self.spill.files():
            with self.spill.claim(path) as records:
                if records is not None:
                    acknowledged += self._resend_file(path, records)
        return acknowledged

    def _resend_file(self, path, records) -> int:
        spill, failed = self.spill, self._on_failure
        own = path in spill.own
        outcome = [0, 0]  # acknowledged, failed again (spilled again)

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                outcome[0] += 1
                spill.acknowledged(msg.topic())
            else:
                outcome[1] += 1
                failed(msg.topic(), err, msg)

        log.warning("event=spill_resend_started path=%s", path)
        count, corrupt = 0, None
        try:
            for record in records:
                self._produce(record.topic, record.key, record.value, on_delivery)
                count += 1
                if not count & 1023:
                    self.poll(0)
        except CorruptSpill as exc:
            corrupt = exc
        if not own:
            spill.loaded(count)
        # every record gets its report within message.timeout.ms; flush spills what is left after that
        self.flush(self.settings.delivery_timeout_ms / 1000 + 30)
        if sum(outcome) != count:  # a purge's reports did not come: keep the file (re-sent next time)
            log.error(
                "event=spill_resend_incomplete path=%s records=%d reported=%d", path, count, sum(outcome)
            )
            return outcome[0]
        if corrupt is not None:
            kept = spill.set_aside(path, count)
            log.error("event=spill_corrupt error=%s kept=%s", corrupt, kept)
        else:
            spill.done(path, count)
        log.warning(
            "event=spill_resend_finished path=%s records=%d acknowledged=%d spilled_again=%d",
            path,
            count,
            outcome[0],
            outcome[1],
        )
        return outcome[0]

    def _produce(self, topic: str, key: bytes | None, value: bytes, callback) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=callback)
                return
            except BufferError:
                metrics.BACKPRESSURE.inc()
                self.poll(0.05)

    def pending(self) -> int:
        return len(self._producer)

    @property
    def sent(self) -> int:
        return self._sent

    def sync_metrics(self) -> None:
        """Move the delivery tallies into Prometheus counters (cheap to call once a second)."""
        with self._sync_lock:
            self._sync_metrics()

    def _sync_metrics(self) -> None:
        self.spill.sync_if_due()
        stats = self.stats
        for outcome, now, before in (
            ("delivered", stats.delivered, self._synced.delivered),
            ("failed", stats.failed, self._synced.failed),
        ):
            for topic, count in now.items():
                delta = count - before[topic]
                if delta:
                    metrics.RECORDS_OUT.labels(self.source, topic, outcome).inc(delta)
                    before[topic] = count
