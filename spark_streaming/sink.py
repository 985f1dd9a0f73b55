"""The exactly-once PostgreSQL sink: one transaction per micro-batch, skipped when already in the ledger.

For each batch: COPY every output into temporary tables, upsert from them into the targets (raw.ticks,
raw.bars, raw.dead_letters, rt.bars_1m, rt.indicators_1m, rt.signals), write the new state (watermark,
per-symbol indicator state, open bars) and the ledger row (query id, batch id), and commit once. The
indicator state is cached in memory and only replaced after the commit; after any failure the cache is
dropped and reloaded from the database, so the database is always the truth.

Ticks are deduplicated on (symbol, event_time) by the raw table's primary key: the insert returns the
rows it really added, and only those feed the bars, so a duplicate never counts twice.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import psycopg2
import psycopg2.errors
import pyarrow as pa
import pyarrow.csv as pacsv

from common.contract import RejectReason, Stage, payload_text
from common.db import DatabaseUnavailable, connect
from common.settings import PostgresSettings
from spark_streaming import indicators as ind
from spark_streaming.compute import BAR_MS, OPEN_BAR_COLUMNS, SymbolStates, process_batch, split_late

log = logging.getLogger(__name__)

_TEMP_TABLES = """
create temp table if not exists t_ticks (
    symbol text, event_time_ms bigint, price float8, size float8, bid float8, ask float8, day_volume float8,
    currency text, exchange text, source text, ingest_time_ms bigint, kafka_partition int, kafka_offset bigint
) on commit delete rows;
create temp table if not exists t_bars_raw (
    symbol text, interval text, event_time_ms bigint, open float8, high float8, low float8, close float8,
    adj_close float8, volume float8, source text, ingest_time_ms bigint, kafka_partition int,
    kafka_offset bigint
) on commit delete rows;
create temp table if not exists t_dead (
    failed_at_ms bigint, kafka_topic text, kafka_partition int, kafka_offset bigint, stage text, reason text,
    detail text, source text, intended_topic text, symbol text, payload text, payload_encoding text
) on commit delete rows;
create temp table if not exists t_bars (
    symbol text, bar_start_ms bigint, open float8, high float8, low float8, close float8, volume float8,
    vwap float8, trade_count int, is_final boolean
) on commit delete rows;
create temp table if not exists t_ind (
    symbol text, bar_start_ms bigint, close float8, ema_12 float8, ema_26 float8, macd float8,
    macd_signal float8, macd_hist float8, rsi_14 float8, sma_20 float8, sma_50 float8, sma_200 float8,
    session_vwap float8, is_final boolean
) on commit delete rows;
create temp table if not exists t_sig (
    symbol text, signal_time_ms bigint, signal_type text, value float8, threshold float8
) on commit delete rows;
create temp table if not exists t_open (
    symbol text, bar_start_ms bigint, open float8, high float8, low float8, close float8, volume float8,
    pv float8, trade_count int, first_ms bigint, last_ms bigint
) on commit delete rows;
create temp table if not exists t_state (symbol text, state bytea) on commit delete rows;
"""

_TS = "(timestamptz 'epoch' + ({} * interval '1 millisecond'))"

_INSERT_TICKS = f"""
insert into raw.ticks (symbol, event_time, price, size, bid, ask, day_volume, currency, exchange, source,
                       ingest_time, kafka_partition, kafka_offset)
select symbol, {_TS.format("event_time_ms")}, price, size, bid, ask, day_volume, currency, exchange, source,
       {_TS.format("ingest_time_ms")}, kafka_partition, kafka_offset
from t_ticks
on conflict (symbol, event_time) do nothing
returning symbol, (extract(epoch from event_time) * 1000)::bigint
"""
# The rows really added come back through COPY ... TO STDOUT (read by Arrow's CSV reader) instead of
# psycopg2's per-row tuples: measured 0.26 s -> 0.02 s for 200k rows.
_INSERT_TICKS_COPY_OUT = f"copy ({_INSERT_TICKS}) to stdout with (format csv)"
_ADDED_SCHEMA = pa.schema([("symbol", pa.string()), ("event_time_ms", pa.int64())])

_UPSERT_RAW_BARS = f"""
insert into raw.bars as b (symbol, interval, bar_start, open, high, low, close, adj_close, volume, source,
                           ingest_time, kafka_partition, kafka_offset)
select distinct on (symbol, interval, event_time_ms)
       symbol, interval, {_TS.format("event_time_ms")}, open, high, low, close, adj_close, volume, source,
       {_TS.format("ingest_time_ms")}, kafka_partition, kafka_offset
from t_bars_raw
order by symbol, interval, event_time_ms, ingest_time_ms desc, kafka_offset desc
on conflict (symbol, interval, bar_start) do update set
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    adj_close = excluded.adj_close, volume = excluded.volume, source = excluded.source,
    ingest_time = excluded.ingest_time, kafka_partition = excluded.kafka_partition,
    kafka_offset = excluded.kafka_offset, landed_at = now()
where excluded.ingest_time >= b.ingest_time
"""

_INSERT_DEAD = f"""
insert into raw.dead_letters (failed_at, kafka_topic, kafka_partition, kafka_offset, stage, reason, detail,
                              source, intended_topic, symbol, payload, payload_encoding)
select {_TS.format("failed_at_ms")}, kafka_topic, kafka_partition, kafka_offset, stage, reason, detail,
       source, intended_topic, symbol, payload, payload_encoding
from t_dead
on conflict do nothing
"""

_UPSERT_BARS = f"""
insert into rt.bars_1m (symbol, bar_start, open, high, low, close, volume, vwap, trade_count, is_final)
select symbol, {_TS.format("bar_start_ms")}, open, high, low, close, volume, vwap, trade_count, is_final
from t_bars
on conflict (symbol, bar_start) do update set
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, vwap = excluded.vwap, trade_count = excluded.trade_count,
    is_final = excluded.is_final, updated_at = now()
"""

_UPSERT_IND = f"""
insert into rt.indicators_1m (symbol, bar_start, close, ema_12, ema_26, macd, macd_signal, macd_hist, rsi_14,
                              sma_20, sma_50, sma_200, session_vwap, is_final)
select symbol, {_TS.format("bar_start_ms")}, close, ema_12, ema_26, macd, macd_signal, macd_hist, rsi_14,
       sma_20, sma_50, sma_200, session_vwap, is_final
from t_ind
on conflict (symbol, bar_start) do update set
    close = excluded.close, ema_12 = excluded.ema_12, ema_26 = excluded.ema_26, macd = excluded.macd,
    macd_signal = excluded.macd_signal, macd_hist = excluded.macd_hist, rsi_14 = excluded.rsi_14,
    sma_20 = excluded.sma_20, sma_50 = excluded.sma_50, sma_200 = excluded.sma_200,
    session_vwap = excluded.session_vwap, is_final = excluded.is_final, updated_at = now()
"""

_INSERT_SIG = f"""
insert into rt.signals (symbol, signal_time, signal_type, value, threshold)
select symbol, {_TS.format("signal_time_ms")}, signal_type, value, threshold from t_sig
on conflict (symbol, signal_time, signal_type) do nothing
"""

_UPSERT_OPEN = """
insert into rt.stream_open_bars (query_id, symbol, bar_start_ms, open, high, low, close, volume, pv,
                                 trade_count, first_ms, last_ms)
select %(q)s, symbol, bar_start_ms, open, high, low, close, volume, pv, trade_count, first_ms, last_ms
from t_open
on conflict (query_id, symbol, bar_start_ms) do update set
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, pv = excluded.pv, trade_count = excluded.trade_count,
    first_ms = excluded.first_ms, last_ms = excluded.last_ms
"""

_UPSERT_STATE = """
insert into rt.stream_symbol_state (query_id, symbol, state)
select %(q)s, symbol, state from t_state
on conflict (query_id, symbol) do update set state = excluded.state, updated_at = now()
"""

_UPSERT_QUERY = """
insert into rt.stream_query_state (query_id, query_name, max_event_time_ms, last_batch_id)
values (%(q)s, %(name)s, %(max)s, %(batch)s)
on conflict (query_id) do update set max_event_time_ms = excluded.max_event_time_ms,
    last_batch_id = excluded.last_batch_id, query_name = excluded.query_name, updated_at = now()
"""

_HEARTBEAT = """
insert into rt.stream_heartbeat (query_name, query_id, last_batch_id, last_batch_at, beat_at, status)
values (%(name)s, %(q)s, %(batch)s, now(), now(), 'running')
on conflict (query_name) do update set query_id = excluded.query_id, last_batch_id = excluded.last_batch_id,
    last_batch_at = excluded.last_batch_at, beat_at = excluded.beat_at, status = excluded.status
"""


def _arrow(frame: pd.DataFrame, columns: list[str] | tuple[str, ...]) -> pa.Table:
    """The frame's `columns` as an Arrow table (NaN and None become null)."""
    arrays = []
    for c in columns:
        s = frame[c]
        if s.dtype == object:  # strings, or numbers that went through an all-null concat
            arrays.append(pa.array(s.to_numpy(object), from_pandas=True))
        else:
            arrays.append(pa.array(s.to_numpy(), from_pandas=True))
    return pa.Table.from_arrays(arrays, names=list(columns))


def _copy_arrow(cur, target: str, table: pa.Table) -> None:
    """COPY an Arrow table into `target` through Arrow's CSV writer (null becomes NULL)."""
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    buf.seek(0)
    cur.copy_expert(f"copy {target} ({', '.join(table.column_names)}) from stdin with (format csv)", buf)


def _copy(cur, table: str, frame: pd.DataFrame, columns: list[str]) -> None:
    """COPY a frame's `columns` into a temporary table."""
    if not frame.empty:
        _copy_arrow(cur, table, _arrow(frame, columns))


def land_ticks(cur, ticks: pd.DataFrame) -> pd.DataFrame:
    """Land ticks (unique on (symbol, event_time_ms)) in raw.ticks; returns the ones really added.

    Optimistic: one COPY straight into raw.ticks inside a savepoint, as fast as `psql \\copy` (a batch
    rarely repeats a tick already landed: replayed batches are skipped by the ledger). If the COPY
    meets a tick that is already there (unique violation), the savepoint is rolled back and the batch
    takes the deduplicating path: COPY into the temp table, INSERT ... ON CONFLICT DO NOTHING
    RETURNING the rows really added. Rows go in primary-key order either way: the index inserts then
    walk the btree in order (measured 1.3-1.8x faster than Kafka order for 200k rows over 1,000
    symbols); duplicates within the batch are already gone, so the order cannot change which row wins.
    """
    if ticks.empty:
        return ticks
    _ensure_partitions(cur, "raw.ticks", ticks["event_time_ms"])
    ordered = ticks.sort_values(["symbol", "event_time_ms"])
    cur.execute("savepoint land_ticks")
    try:
        _copy_ticks_direct(cur, ordered)
    except psycopg2.errors.UniqueViolation:
        cur.execute("rollback to savepoint land_ticks")
    else:
        cur.execute("release savepoint land_ticks")
        return ticks.reset_index(drop=True)
    _copy(cur, "t_ticks", ordered, list(_TICK_COPY))
    return ticks.merge(_insert_ticks(cur), on=["symbol", "event_time_ms"])


def _copy_ticks_direct(cur, ticks: pd.DataFrame) -> None:
    """COPY ticks into raw.ticks itself (event and ingest times as UTC timestamps, exact to the ms).

    The times are written without a zone and read as UTC (SET LOCAL, this transaction only): Arrow
    formats zoned timestamps 20x slower (1.2 s per 500k values here)."""
    table = _arrow(ticks, _TICK_COPY)
    for ms, ts in (("event_time_ms", "event_time"), ("ingest_time_ms", "ingest_time")):
        i = table.column_names.index(ms)
        table = table.set_column(i, ts, table.column(i).cast(pa.timestamp("ms")))
    cur.execute("set local time zone 'UTC'")
    _copy_arrow(cur, "raw.ticks", table)


def _insert_ticks(cur) -> pd.DataFrame:
    """Deduplicating insert t_ticks -> raw.ticks; returns (symbol, event_time_ms) of the rows it added."""
    out = io.BytesIO()
    cur.copy_expert(_INSERT_TICKS_COPY_OUT, out)
    if out.tell() == 0:  # every row was a duplicate (Arrow refuses an empty CSV)
        return _ADDED_SCHEMA.empty_table().to_pandas()
    out.seek(0)
    added = pacsv.read_csv(
        out,
        read_options=pacsv.ReadOptions(column_names=_ADDED_SCHEMA.names),
        convert_options=pacsv.ConvertOptions(column_types=_ADDED_SCHEMA, strings_can_be_null=False),
    )
    return added.to_pandas()


def _ensure_partitions(cur, parent: str, ms: pd.Series) -> None:
    if ms.empty:
        return
    cur.execute(
        f"select raw.ensure_partitions(%s, {_TS.format('%s')}, {_TS.format('%s')})",
        (parent, int(ms.min()), int(ms.max())),
    )


@dataclass
class BatchFrames:
    """A micro-batch split by destination (pandas, from Spark through Arrow)."""

    ticks: pd.DataFrame  # valid ticks: compute.TICK columns + kafka_partition/offset
    bars: pd.DataFrame  # valid raw bars
    dead: pd.DataFrame  # rows for raw.dead_letters (failed_at_ms ... payload_encoding)
    input_rows: int


@dataclass
class BatchOutcome:
    batch_id: int
    skipped: bool
    input_rows: int = 0
    fresh_ticks: int = 0
    duplicates: int = 0
    late: int = 0
    dead: int = 0
    bars: int = 0
    signals: int = 0
    latencies_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    watermark_ms: int = 0
    seconds: float = 0.0
    finished_at: float = field(default_factory=time.time)


@dataclass
class _Cache:
    states: SymbolStates
    open_bars: pd.DataFrame
    max_event_time_ms: int


class PostgresSink:
    """Writes micro-batches exactly once; one instance per running query (it holds the state cache)."""

    def __init__(
        self,
        pg: PostgresSettings,
        query_name: str,
        query_id: Callable[[], str],
        watermark_delay_ms: int,
        thresholds: ind.SignalThresholds,
        database: str | None = None,
    ) -> None:
        self.pg = pg
        self.database = database
        self.query_name = query_name
        self._query_id_fn = query_id
        self._query_id: str | None = None
        self.delay = watermark_delay_ms
        self.thresholds = thresholds
        self._conn: psycopg2.extensions.connection | None = None
        self._cache: _Cache | None = None

    # --- connection and cache -------------------------------------------------------------------
    @property
    def query_id(self) -> str:
        if self._query_id is None:
            self._query_id = self._query_id_fn()
        return self._query_id

    def _connection(self) -> psycopg2.extensions.connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect("writer", self.pg, database=self.database)
            with self._conn, self._conn.cursor() as cur:
                cur.execute("set synchronous_commit = on")
                cur.execute(_TEMP_TABLES)
        return self._conn

    def reset(self) -> None:
        """Forget the connection and the cache (after any failure: the database is the truth)."""
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
        self._conn = None
        self._cache = None

    def _load(self, cur) -> _Cache:
        q = self.query_id
        cur.execute("select max_event_time_ms from rt.stream_query_state where query_id = %s", (q,))
        row = cur.fetchone()
        max_event = int(row[0]) if row else -(2**62)
        cur.execute(
            "select symbol, state from rt.stream_symbol_state where query_id = %s order by symbol", (q,)
        )
        rows = cur.fetchall()
        states = SymbolStates()
        if rows:
            states.index = {s: i for i, (s, _) in enumerate(rows)}
            states.matrix = np.vstack([np.frombuffer(bytes(b), dtype=np.float64) for _, b in rows]).copy()
        cur.execute(
            f"select {', '.join(OPEN_BAR_COLUMNS)} from rt.stream_open_bars where query_id = %s", (q,)
        )
        open_bars = pd.DataFrame(cur.fetchall(), columns=OPEN_BAR_COLUMNS)
        open_bars = open_bars.astype(
            {
                "bar_start_ms": "int64",
                "open": float,
                "high": float,
                "low": float,
                "close": float,
                "volume": float,
                "pv": float,
                "trade_count": "int64",
                "first_ms": "int64",
                "last_ms": "int64",
            }
        )
        log.info("event=state_loaded query_id=%s symbols=%d open_bars=%d", q, len(rows), len(open_bars))
        return _Cache(states, open_bars, max_event)

    def state_rows(self) -> int:
        c = self._cache
        return 0 if c is None else len(c.states.index) + len(c.open_bars)

    def state_bytes(self) -> int:
        c = self._cache
        return 0 if c is None else c.states.nbytes() + int(c.open_bars.memory_usage(deep=True).sum())

    def watermark_ms(self) -> int | None:
        c = self._cache
        return None if c is None or c.max_event_time_ms < 0 else c.max_event_time_ms - self.delay

    # --- one batch ------------------------------------------------------------------------------
    def write(self, batch_id: int, frames: BatchFrames) -> BatchOutcome:
        """Land one micro-batch exactly once. Raises on database errors (after resetting itself)."""
        started = time.perf_counter()
        try:
            return self._write(batch_id, frames, started)
        except (psycopg2.Error, DatabaseUnavailable):
            self.reset()
            raise

    def _write(self, batch_id: int, frames: BatchFrames, started: float) -> BatchOutcome:
        conn = self._connection()
        q = self.query_id
        with conn, conn.cursor() as cur:
            cur.execute("select 1 from rt.stream_ledger where query_id = %s and batch_id = %s", (q, batch_id))
            if cur.fetchone() is not None:
                log.info("event=batch_skipped query_id=%s batch_id=%d reason=already_committed", q, batch_id)
                return BatchOutcome(batch_id, skipped=True, seconds=time.perf_counter() - started)
            if self._cache is None:
                self._cache = self._load(cur)
            cache = self._cache
            watermark_before = cache.max_event_time_ms - self.delay

            ticks = frames.ticks.sort_values(["kafka_partition", "kafka_offset"], kind="stable")
            ticks = ticks.drop_duplicates(["symbol", "event_time_ms"], keep="first")
            on_time, late = split_late(ticks, watermark_before)
            dead = frames.dead
            if not late.empty:
                dead = pd.concat([dead, _late_letters(late, watermark_before)], ignore_index=True)

            fresh = land_ticks(cur, on_time)

            result = process_batch(
                fresh[["symbol", "event_time_ms", "price", "size"]],
                cache.open_bars,
                cache.states,
                cache.max_event_time_ms,
                self.delay,
                self.thresholds,
            )

            if not frames.bars.empty:
                _ensure_partitions(cur, "raw.bars", frames.bars["event_time_ms"])
                _copy(cur, "t_bars_raw", frames.bars, list(_BAR_COPY))
                cur.execute(_UPSERT_RAW_BARS)
            if not dead.empty:
                _ensure_partitions(cur, "raw.dead_letters", dead["failed_at_ms"])
                _copy(cur, "t_dead", dead, list(_DEAD_COPY))
                cur.execute(_INSERT_DEAD)
            if not result.bars.empty:
                for parent in ("rt.bars_1m", "rt.indicators_1m"):
                    _ensure_partitions(cur, parent, result.bars["bar_start_ms"])
                _copy(cur, "t_bars", result.bars, list(result.bars.columns))
                cur.execute(_UPSERT_BARS)
                _copy(cur, "t_ind", result.indicators, list(result.indicators.columns))
                cur.execute(_UPSERT_IND)
            if not result.signals.empty:
                _ensure_partitions(cur, "rt.signals", result.signals["signal_time_ms"])
                _copy(cur, "t_sig", result.signals, list(result.signals.columns))
                cur.execute(_INSERT_SIG)

            # state: open bars, per-symbol indicator state, watermark, ledger, heartbeat
            cur.execute(
                "delete from rt.stream_open_bars where query_id = %s and bar_start_ms + %s <= %s",
                (q, BAR_MS, result.watermark_ms),
            )
            if not result.touched_open.empty:
                _copy(cur, "t_open", result.touched_open, OPEN_BAR_COLUMNS)
                cur.execute(_UPSERT_OPEN, {"q": q})
            if result.changed_symbols:
                rows = result.states.rows(np.array(result.changed_symbols, dtype=object))
                state_frame = pd.DataFrame(
                    {
                        "symbol": result.changed_symbols,
                        "state": ["\\x" + result.states.matrix[r].tobytes().hex() for r in rows],
                    }
                )
                _copy(cur, "t_state", state_frame, ["symbol", "state"])
                cur.execute(_UPSERT_STATE, {"q": q})
            cur.execute(
                _UPSERT_QUERY,
                {"q": q, "name": self.query_name, "max": result.max_event_time_ms, "batch": batch_id},
            )
            cur.execute(
                "insert into rt.stream_ledger"
                " (query_id, batch_id, query_name, input_rows, tick_rows, dead_rows)"
                " values (%s, %s, %s, %s, %s, %s)",
                (q, batch_id, self.query_name, frames.input_rows, len(fresh), len(dead)),
            )
            cur.execute(_HEARTBEAT, {"name": self.query_name, "q": q, "batch": batch_id})
        committed_ms = time.time() * 1000.0
        self._cache = _Cache(result.states, result.open_bars, result.max_event_time_ms)
        latencies = committed_ms - fresh["ingest_time_ms"].to_numpy(np.float64) if len(fresh) else np.empty(0)
        outcome = BatchOutcome(
            batch_id,
            skipped=False,
            input_rows=frames.input_rows,
            fresh_ticks=len(fresh),
            duplicates=len(on_time) - len(fresh) + (len(frames.ticks) - len(ticks)),
            late=len(late),
            dead=len(dead),
            bars=len(result.bars),
            signals=len(result.signals),
            latencies_ms=latencies,
            watermark_ms=result.watermark_ms,
            seconds=time.perf_counter() - started,
        )
        log.info(
            "event=batch_committed query_id=%s batch_id=%d input=%d ticks=%d dup=%d late=%d dead=%d bars=%d "
            "signals=%d seconds=%.3f",
            q,
            batch_id,
            outcome.input_rows,
            outcome.fresh_ticks,
            outcome.duplicates,
            outcome.late,
            outcome.dead,
            outcome.bars,
            outcome.signals,
            outcome.seconds,
        )
        return outcome

    def beat(self, status: str = "running") -> None:
        """Refresh the heartbeat row outside a batch (idle query), on its own short connection so it can
        never touch a batch's transaction; errors are logged, not raised."""
        try:
            query_id = self.query_id
        except (OSError, ValueError, KeyError):  # the query never started: no checkpoint metadata yet
            return
        try:
            conn = connect("writer", self.pg, database=self.database)
        except DatabaseUnavailable as exc:
            log.warning("event=heartbeat_failed error=%s", exc)
            return
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "insert into rt.stream_heartbeat (query_name, query_id, beat_at, status)"
                    " values (%s, %s, now(), %s)"
                    " on conflict (query_name) do update set query_id = excluded.query_id, beat_at = now(),"
                    " status = excluded.status",
                    (self.query_name, query_id, status),
                )
        except psycopg2.Error as exc:
            log.warning(
                "event=heartbeat_failed error=%s", str(exc).strip().splitlines()[0] if str(exc) else exc
            )
        finally:
            conn.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_TICK_COPY = (
    "symbol",
    "event_time_ms",
    "price",
    "size",
    "bid",
    "ask",
    "day_volume",
    "currency",
    "exchange",
    "source",
    "ingest_time_ms",
    "kafka_partition",
    "kafka_offset",
)
_BAR_COPY = (
    "symbol",
    "interval",
    "event_time_ms",
    "open",
    "high",
    "low",
    "close",
    "adj_close",
    "volume",
    "source",
    "ingest_time_ms",
    "kafka_partition",
    "kafka_offset",
)
_DEAD_COPY = (
    "failed_at_ms",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "stage",
    "reason",
    "detail",
    "source",
    "intended_topic",
    "symbol",
    "payload",
    "payload_encoding",
)


def _late_letters(late: pd.DataFrame, watermark_ms: int) -> pd.DataFrame:
    if late.empty:
        return pd.DataFrame(columns=list(_DEAD_COPY))
    return pd.DataFrame(
        {
            "failed_at_ms": late["kafka_ms"].to_numpy(np.int64),
            "kafka_topic": late["kafka_topic"].to_numpy(object),
            "kafka_partition": late["kafka_partition"].to_numpy(np.int64),
            "kafka_offset": late["kafka_offset"].to_numpy(np.int64),
            "stage": Stage.STREAM.value,
            "reason": RejectReason.STALE_TIME.value,
            "detail": [
                f"event_time_ms {t} is behind the watermark {watermark_ms}" for t in late["event_time_ms"]
            ],
            "source": late["source"].to_numpy(object),
            "intended_topic": late["kafka_topic"].to_numpy(object),
            "symbol": late["symbol"].to_numpy(object),
            "payload": [_payload(v)[0] for v in late["value"]],
            "payload_encoding": [_payload(v)[1] for v in late["value"]],
        }
    )


def rejected_letters(rows: pd.DataFrame) -> pd.DataFrame:
    """Dead-letter rows for records refused by parse/validation (rows carry kafka_* and the raw value)."""
    if rows.empty:
        return pd.DataFrame(columns=list(_DEAD_COPY))
    payloads = [_payload(v) for v in rows["value"]]
    return pd.DataFrame(
        {
            "failed_at_ms": rows["kafka_ms"].to_numpy(np.int64),
            "kafka_topic": rows["kafka_topic"].to_numpy(object),
            "kafka_partition": rows["kafka_partition"].to_numpy(np.int64),
            "kafka_offset": rows["kafka_offset"].to_numpy(np.int64),
            "stage": Stage.STREAM.value,
            "reason": rows["reason"].to_numpy(object),
            "detail": [str(d)[:2000] for d in rows["detail"]],
            "source": rows["kafka_topic"].to_numpy(object),
            "intended_topic": rows["kafka_topic"].to_numpy(object),
            "symbol": [s if isinstance(s, str) else None for s in rows["symbol"]],
            "payload": [p for p, _ in payloads],
            "payload_encoding": [e for _, e in payloads],
        }
    )


def _payload(value: object) -> tuple[str, str]:
    raw = bytes(value) if value is not None else b""
    text, encoding = payload_text(raw)
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        import base64

        return base64.b64encode(raw).decode("ascii"), "base64"
    return text, encoding
