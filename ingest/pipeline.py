"""Source -> validate and clean -> Kafka, with every refused record dead-lettered (nothing is dropped)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from common.contract import (
    MAX_MESSAGE_BYTES,
    DeadLetter,
    RejectReason,
    Source,
    Stage,
    Topic,
    clean_symbol_or_none,
    encode,
    message_key,
    payload_text,
)
from common.settings import contract_settings
from ingest import metrics
from ingest.instruments import Instruments
from ingest.producer import KafkaSink
from ingest.rules import (
    Limits,
    Rejection,
    clean,
    is_clean_symbol,
    parse_json,
    round_to_ticks,
    tick_arrays_ok,
)
from ingest.sequence import SequenceGuard
from ingest.settings import IngestSettings
from ingest.sources.base import RawRecord
from ingest.wire import encode_price_size_tick, encode_price_size_ticks

log = logging.getLogger("ingest.pipeline")
_json = msgspec.json.Encoder()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class RunStats:
    read: int = 0
    accepted: int = 0
    rejected: Tally = field(default_factory=Tally)

    @property
    def dead_lettered(self) -> int:
        return sum(self.rejected.values())


class Pipeline:
    """Validates raw records and publishes them: accepted ones to their topic, refused ones to the DLQ.

    `topics` maps a contract topic to the topic actually written (tests and benchmarks use their own).
    `live=False` (backfills, replays of old data) turns the stale-time rule off.
    """

    def __init__(
        self,
        sink: KafkaSink,
        settings: IngestSettings,
        instruments: Instruments | None = None,
        *,
        topics: Mapping[Topic, str] | None = None,
        live: bool = True,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.sink = sink
        self.instruments = instruments or Instruments()
        known = None if settings.accept_unknown_symbols else self.instruments.__contains__
        self.limits = Limits(
            future_tolerance_ms=contract_settings().future_tolerance_ms,
            max_age_ms=settings.max_age_ms if live else None,
            known=known,
        )
        self.guard = SequenceGuard(settings.allowed_lateness_ms, settings.dedupe_window_ms)
        self.topics = {t: (topics or {}).get(t, t.value) for t in Topic}
        self.clock = clock
        self.stats = RunStats()
        self._synced = RunStats()
        self._sync_lock = threading.Lock()
        self._tick_size = {i.symbol: i.tick_size for i in self.instruments}
        # the vectorised path's per-symbol cache: guard slot, tick size and Kafka key by slot
        self._fast_slots: dict[str, int] = {}
        self._slot_ticks = np.zeros(64, dtype=float)
        self._slot_keys: list[bytes] = [b""] * 64

    # --- one record ----------------------------------------------------------------------------

    def process(self, raw: RawRecord) -> Rejection | None:
        """Validate one record and hand it to the producer; returns the rejection when refused."""
        self.stats.read += 1
        now = self.clock()
        value = raw.value
        if isinstance(value, bytes | bytearray | str):
            parsed = parse_json(value)
            if isinstance(parsed, Rejection):
                return self._dead_letter(raw, parsed, None)
            value = parsed
        message = clean(
            raw.topic,
            value,
            now,
            self.limits,
            source=raw.source,
            ingest_time_ms=raw.received_ms or now,
            tick_size=self._tick_size.get,
        )
        if isinstance(message, Rejection):
            return self._dead_letter(raw, message, value.get("symbol"))
        symbol = message["symbol"]
        key = (symbol, message["interval"]) if raw.topic is Topic.BARS else symbol
        seq = self.guard.check(key, message["event_time_ms"])
        if seq is not None:
            return self._dead_letter(raw, seq, symbol)
        out = _json.encode(message)
        if len(out) > MAX_MESSAGE_BYTES:
            oversize = Rejection(RejectReason.OVERSIZE, f"{len(out)} bytes encoded")
            return self._dead_letter(raw, oversize, symbol)
        self.sink.send(self.topics[raw.topic], symbol.encode(), out)
        self.stats.accepted += 1
        return None

    def _dead_letter(self, raw: RawRecord, rejection: Rejection, symbol: Any) -> Rejection:
        original = raw.value
        if isinstance(original, dict):
            original = json.dumps(original, default=str).encode("utf-8")
        elif isinstance(original, str):
            original = original.encode("utf-8")
        truncated = len(original) > MAX_MESSAGE_BYTES
        text, encoding = payload_text(bytes(original[:MAX_MESSAGE_BYTES]))
        detail = rejection.detail + (f" (payload truncated from {len(original)} bytes)" if truncated else "")
        sym = clean_symbol_or_none(symbol.strip().upper() if isinstance(symbol, str) else None)
        letter = DeadLetter(
            reason=rejection.reason,
            detail=detail[:2000],
            stage=Stage.INGEST,
            source=raw.source.value,
            topic=self.topics[raw.topic],
            symbol=sym or None,
            payload=text,
            payload_encoding=encoding,
            failed_at_ms=self.clock(),
        )
        self.sink.send(self.topics[Topic.DEADLETTER], message_key(sym), encode(letter))
        self.stats.rejected[rejection.reason] += 1
        log.debug("event=rejected reason=%s source=%s symbol=%s", rejection.reason, raw.source, sym)
        return rejection

    # --- vectorised ticks (the synthetic load generator's fast path) -------------------------------

    def _fast_slot(self, symbol: str) -> int:
        """The sequence slot of a symbol the vectorised path may pass without per-row cleaning: it is
        already in its clean form and known (or unknown symbols are accepted). -1 otherwise."""
        slot = self._fast_slots.get(symbol)
        if slot is not None:
            return slot
        known = self.limits.known
        if not is_clean_symbol(symbol) or (known is not None and not known(symbol)):
            return -1
        slot = self.guard.slot(symbol)
        if slot >= len(self._slot_ticks):
            grown = np.zeros(max(64, 2 * (slot + 1)), dtype=float)
            grown[: len(self._slot_ticks)] = self._slot_ticks
            self._slot_ticks = grown
            self._slot_keys.extend([b""] * (len(grown) - len(self._slot_keys)))
        self._slot_ticks[slot] = self._tick_size.get(symbol) or 0.0
        self._slot_keys[slot] = symbol.encode("utf-8")
        self._fast_slots[symbol] = slot
        return slot

    def process_tick_arrays(
        self,
        symbols: list[str],
        prices: np.ndarray,
        sizes: np.ndarray,
        times: np.ndarray,
        source: Source,
        received_ms: int,
    ) -> int:
        """Validate and publish a chunk of (symbol, price, size, time) ticks; returns how many passed.

        The same rules as :meth:`process`, judged in bulk: the stateless rules run vectorised, and a
        symbol whose rows all pass them and move strictly forward in time is accepted by the sequence
        guard in one step. Every other row goes through :meth:`process` (for its exact reason, or to be
        judged by the guard row by row), in its place in the chunk.
        """
        n = len(symbols)
        now = self.clock()
        prices, sizes = np.asarray(prices, dtype=float), np.asarray(sizes, dtype=float)
        times = np.asarray(times)
        if not np.issubdtype(times.dtype, np.integer):  # whole-millisecond checks are the record path's
            rows = zip(symbols, times.tolist(), prices.tolist(), sizes.tolist(), strict=True)
            return sum(
                self.process(
                    RawRecord(
                        Topic.TICKS,
                        {"symbol": sym, "event_time_ms": t, "price": p, "size": sz},
                        source,
                        received_ms,
                    )
                )
                is None
                for sym, t, p, sz in rows
            )
        get = self._fast_slots.get
        ids = [get(s, -1) for s in symbols]
        if -1 in ids:  # a symbol not seen before (or one that needs cleaning / is unknown)
            fresh = {s: self._fast_slot(s) for s in set(symbols) if s not in self._fast_slots}
            ids = [get(s, fresh.get(s, -1)) for s in symbols]
        slots = np.array(ids, dtype=np.int64)
        ticks = self._slot_ticks[slots]
        rounded = np.where(ticks > 0, round_to_ticks(prices, np.where(ticks > 0, ticks, 1.0)), prices)
        eligible = tick_arrays_ok(rounded, sizes, times, slots >= 0, now, self.limits, received_ms)
        fast = self.guard.accept_in_order(slots, times, eligible)
        topic, src, keys = self.topics[Topic.TICKS], source.value, self._slot_keys
        if fast.all():
            values = encode_price_size_ticks(
                symbols, times.tolist(), rounded.tolist(), sizes.tolist(), src, received_ms
            )
            self.sink.send_many(topic, [keys[i] for i in ids], values)
            self.stats.read += n
            self.stats.accepted += n
            return n
        passed = 0
        rows = zip(symbols, ids, rounded.tolist(), sizes.tolist(), times.tolist(), fast.tolist(), strict=True)
        for i, (sym, slot, price, size, t, good) in enumerate(rows):
            if good:
                value = encode_price_size_tick(sym, t, price, size, src, received_ms)
                self.sink.send(topic, keys[slot], value)
                self.stats.read += 1
                self.stats.accepted += 1
                passed += 1
            else:  # process() counts it and judges it with the same rules and the same guard
                raw = {"symbol": sym, "event_time_ms": t, "price": float(prices[i]), "size": size}
                passed += self.process(RawRecord(Topic.TICKS, raw, source, received_ms)) is None
        return passed

    # --- a whole source ------------------------------------------------------------------------

    def run(
        self,
        records: Iterable[RawRecord],
        stop: threading.Event | None = None,
        on_progress: Callable[[int], None] | None = None,
        limit: int | None = None,
    ) -> RunStats:
        """Process records until the source ends, `limit` is reached or `stop` is set; then flush."""
        stop = stop or threading.Event()
        last_sync = time.monotonic()
        count = 0
        for raw in records:
            self.process(raw)
            count += 1
            if count & 1023 == 0:
                if stop.is_set():
                    break
                t = time.monotonic()
                if t - last_sync >= 1.0:
                    self.sync_metrics(raw.source.value)
                    last_sync = t
                if on_progress:
                    on_progress(count)
            if limit is not None and count >= limit:
                break
            if stop.is_set():
                break
        if on_progress:
            on_progress(count)
        self.sink.flush()
        return self.stats

    def run_arrays(
        self,
        chunks: Iterable[tuple[list[str], np.ndarray, np.ndarray, np.ndarray, int]],
        source: Source,
        stop: threading.Event | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> RunStats:
        """Process vectorised tick chunks (e.g. ``SyntheticSource.arrays()``) until done or `stop`."""
        stop = stop or threading.Event()
        last_sync = time.monotonic()
        count = 0
        for symbols, prices, sizes, times, received in chunks:
            self.process_tick_arrays(symbols, prices, sizes, times, source, received)
            count += len(symbols)
            self.sink.poll(0)
            t = time.monotonic()
            if t - last_sync >= 1.0:
                self.sync_metrics(source.value)
                last_sync = t
            if on_progress:
                on_progress(count)
            if stop.is_set():
                break
        self.sink.flush()
        self.sync_metrics(source.value)
        return self.stats

    def sync_metrics(self, source: str) -> None:
        """Move this run's tallies into Prometheus counters (called about once a second, from the run's
        thread or from a metrics thread: see :func:`ingest.service.metrics_sync`)."""
        with self._sync_lock:
            self._sync_metrics(source)

    def _sync_metrics(self, source: str) -> None:
        self.sink.sync_metrics()
        total = self.stats.read
        read = total - self._synced.read
        if read:
            metrics.RECORDS_IN.labels(source, "all").inc(read)
            self._synced.read = total
        for reason, count in dict(self.stats.rejected).items():  # dict(): one-step copy under the GIL
            delta = count - self._synced.rejected[reason]
            if delta:
                metrics.REJECTIONS.labels(source, str(reason)).inc(delta)
                self._synced.rejected[reason] = count

    def finish(self, source: str, flush_timeout_s: float = 60.0) -> int:
        remaining = self.sink.flush(flush_timeout_s)
        self.sync_metrics(source)
        log.info(
            "event=run_finished source=%s read=%d accepted=%d dead_lettered=%d pending=%d",
            source,
            self.stats.read,
            self.stats.accepted,
            self.stats.dead_lettered,
            remaining,
        )
        return remaining
