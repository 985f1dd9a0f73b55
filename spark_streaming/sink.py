"""The exactly-once PostgreSQL sink: one transaction per micro-batch, skipped when already in the ledger.

For each batch: COPY every output into temporary tables, upsert from them into the targets (raw.ticks,
raw.bars, raw.dead_letters, rt.bars_1m, rt.indicators_1m, rt.signals), write the new state (watermark,
per-symbol indicator state, open bars) and the ledger row (query id, batch id), and commit once. The
indicator state is cached in memory and only replaced after the commit; after any failure the cache is
dropped and reloaded from the database, so the database is always the truth.

Ticks are deduplicated on (symbol, event_time) by the raw table's primary key: the insert returns the
rows it really added, and only those feed the bars, so a duplicate never counts twice.

A batch PostgreSQL refuses for a data error (a row's fault, see :mod:`spark_streaming.landing`) is
written again in *careful* mode: the raw landings run in savepoints and are split until the refused
rows are found; they become dead letters (``rejected_by_database``, with the database's message) in
the same transaction as everything else. The query never restarts for a data error.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import psycopg2
import pyarrow as pa

from common.db import DatabaseUnavailable, connect
from common.settings import PostgresSettings
from spark_streaming import indicators as ind
from spark_streaming import letters
from spark_streaming.compute import NEVER_MS, OPEN_BAR_COLUMNS, SymbolStates, process_batch, split_late
from spark_streaming.landing import (
    TS,
    Partitions,
    copy_arrow,
    copy_frame,
    ensure_partitions,
    isolate,
    land_ticks,
    to_arrow,
)

_LEDGER_CHECK = "select 1 from rt.stream_ledger where query_id = %s and batch_id = %s"

_ROW_ERRORS = (psycopg2.DataError, psycopg2.IntegrityError, pa.ArrowException)
"""A batch that fails with one of these is written again in careful mode (module docstring)."""

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
create temp table if not exists t_out (
    symbol text, bar_start_ms bigint, open float8, high float8, low float8, close float8, volume float8,
    vwap float8, trade_count int, is_final boolean, ema_12 float8, ema_26 float8, macd float8,
    macd_signal float8, macd_hist float8, rsi_14 float8, sma_20 float8, sma_50 float8, sma_200 float8,
    session_vwap float8
) on commit delete rows;
create temp table if not exists t_sig (
    symbol text, signal_time_ms bigint, signal_type text, value float8, threshold float8
) on commit delete rows;
create temp table if not exists t_open (
    symbol text, bar_start_ms bigint, open float8, high float8, low float8, close float8, volume float8,
    pv float8, trade_count int, first_ms bigint, last_ms bigint
) on commit delete rows;
create temp table if not exists t_state (symbol text, state bytea, closed_through_ms bigint)
    on commit delete rows;
"""

_UPSERT_RAW_BARS = f"""
insert into raw.bars as b (symbol, interval, bar_start, open, high, low, close, adj_close, volume, source,
                           ingest_time, kafka_partition, kafka_offset)
select distinct on (symbol, interval, event_time_ms)
       symbol, interval, {TS.format("event_time_ms")}, open, high, low, close, adj_close, volume, source,
       {TS.format("ingest_time_ms")}, kafka_partition, kafka_offset
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
select {TS.format("failed_at_ms")}, kafka_topic, kafka_partition, kafka_offset, stage, reason, detail,
       source, intended_topic, symbol, payload, payload_encoding
from t_dead
on conflict do nothing
"""

_UPSERT_BARS = f"""
insert into rt.bars_1m (symbol, bar_start, open, high, low, close, volume, vwap, trade_count, is_final)
select symbol, {TS.format("bar_start_ms")}, open, high, low, close, volume, vwap, trade_count, is_final
from t_out
on conflict (symbol, bar_start) do update set
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, vwap = excluded.vwap, trade_count = excluded.trade_count,
    is_final = excluded.is_final, updated_at = now()
"""

_UPSERT_IND = f"""
insert into rt.indicators_1m (symbol, bar_start, close, ema_12, ema_26, macd, macd_signal, macd_hist, rsi_14,
                              sma_20, sma_50, sma_200, session_vwap, is_final)
select symbol, {TS.format("bar_start_ms")}, close, ema_12, ema_26, macd, macd_signal, macd_hist, rsi_14,
       sma_20, sma_50, sma_200, session_vwap, is_final
from t_out
on conflict (symbol, bar_start) do update set
    close = excluded.close, ema_12 = excluded.ema_12, ema_26 = excluded.ema_26, macd = excluded.macd,
    macd_signal = excluded.macd_signal, macd_hist = excluded.macd_hist, rsi_14 = excluded.rsi_14,
    sma_20 = excluded.sma_20, sma_50 = excluded.sma_50, sma_200 = excluded.sma_200,
    session_vwap = excluded.session_vwap, is_final = excluded.is_final, updated_at = now()
"""

_INSERT_SIG = f"""
insert into rt.signals (symbol, signal_time, signal_type, value, threshold)
select symbol, {TS.format("signal_time_ms")}, signal_type, value, threshold from t_sig
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
insert into rt.stream_symbol_state (query_id, symbol, state, closed_through_ms)
select %(q)s, symbol, state, closed_through_ms from t_state
on conflict (query_id, symbol) do update set state = excluded.state,
    closed_through_ms = excluded.closed_through_ms, updated_at = now()
"""

_DELETE_CLOSED = """
delete from rt.stream_open_bars o using t_out b
where o.query_id = %(q)s and b.is_final and o.symbol = b.symbol and o.bar_start_ms = b.bar_start_ms
"""

_UPSERT_QUERY = """
insert into rt.stream_query_state (query_id, query_name, max_event_time_ms, last_batch_id)
values (%(q)s, %(name)s, %(max)s, %(batch)s)
on conflict (query_id) do update set max_event_time_ms = excluded.max_event_time_ms,
    last_batch_id = excluded.last_batch_id, query_name = excluded.query_name, updated_at = now()
"""

# min_bar_start: the earliest bar the batch wrote ('infinity': none); dbt's staging reads rt.bars_1m and
# rt.indicators_1m from it on (stream_written_since_last_run, dbt_project/macros/watermark.sql)
_LEDGER = f"""
insert into rt.stream_ledger (query_id, batch_id, query_name, input_rows, tick_rows, dead_rows, min_bar_start)
values (%(q)s, %(batch)s, %(name)s, %(input)s, %(ticks)s, %(dead)s,
        coalesce({TS.format("%(min_bar_start_ms)s::bigint")}, 'infinity'))
"""

_HEARTBEAT = """
insert into rt.stream_heartbeat (query_name, query_id, last_batch_id, last_batch_at, beat_at, status)
values (%(name)s, %(q)s, %(batch)s, now(), now(), 'running')
on conflict (query_name) do update set query_id = excluded.query_id, last_batch_id = excluded.last_batch_id,
    last_batch_at = excluded.last_batch_at, beat_at = excluded.beat_at, status = excluded.status
"""


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
    refused_by_database: int = 0
    careful: bool = False  # written again in careful mode after a data error
    latencies_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    watermark_ms: int = 0
    seconds: float = 0.0
    finished_at: float = field(default_factory=time.time)
    steps: dict[str, float] = field(default_factory=dict)  # seconds per step of the write (see _Steps)


class _Steps:
    """Wall seconds of each step of one batch's write, by name (the benchmark's "sink by statement")."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def mark(self, name: str) -> None:
        """The time since the previous mark goes to `name`."""
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._t
        self._t = now


class _Transaction:
    """One batch's transaction on an autocommit connection: BEGIN goes with the first statement and
    COMMIT with the last (two round trips fewer than psycopg2's own BEGIN and commit()). Leaving it
    without :meth:`commit_with` (an exception, a skipped batch) rolls back; the sink's partition cache
    learns the partitions made only on commit."""

    def __init__(self, conn, partitions: Partitions) -> None:
        self.conn = conn
        self.partitions = partitions
        self.done = False

    def __enter__(self) -> _Transaction:
        self.cur = self.conn.cursor()
        return self

    def begin_with(self, statement: str, params) -> None:
        self.cur.execute("begin; " + statement, params)

    def commit_with(self, statements: list[str], params: dict) -> None:
        self.cur.execute(";\n".join([*statements, "commit"]), params)
        self.done = True
        self.partitions.committed()

    def __exit__(self, *exc) -> None:
        try:
            if not self.done:
                self.partitions.rolled_back()
                if not self.conn.closed:
                    with contextlib.suppress(psycopg2.Error):
                        self.cur.execute("rollback")
        finally:
            with contextlib.suppress(psycopg2.Error):
                self.cur.close()


_OUT_COLUMNS = (
    "symbol",
    "bar_start_ms",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
    "is_final",
)


def _outputs_table(bars: pd.DataFrame, indicators: pd.DataFrame) -> pa.Table:
    """rt.bars_1m and rt.indicators_1m rows (row-aligned: compute builds both from the same bars) as
    one Arrow table for t_out."""
    table = to_arrow(bars, _OUT_COLUMNS)
    extra = to_arrow(indicators, ind.OUTPUTS)
    return pa.Table.from_arrays([*table.columns, *extra.columns], names=[*_OUT_COLUMNS, *ind.OUTPUTS])


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
        allowed_lateness_ms: int,
        idle_close_ms: int,
        thresholds: ind.SignalThresholds,
        database: str | None = None,
    ) -> None:
        self.pg = pg
        self.database = database
        self.query_name = query_name
        self._query_id_fn = query_id
        self._query_id: str | None = None
        self.lateness = allowed_lateness_ms
        self.idle_close = idle_close_ms
        self.thresholds = thresholds
        self._conn: psycopg2.extensions.connection | None = None
        self._cache: _Cache | None = None
        self._partitions = Partitions()

    # --- connection and cache -------------------------------------------------------------------
    @property
    def query_id(self) -> str:
        if self._query_id is None:
            self._query_id = self._query_id_fn()
        return self._query_id

    def _connection(self) -> psycopg2.extensions.connection:
        """The sink's connection, set up once: the session in UTC (the landing writes zoneless times),
        the temporary tables, and autocommit, so a batch sends its own BEGIN and COMMIT inside its first
        and last round trips (:class:`_Transaction`)."""
        if self._conn is None or self._conn.closed:
            self._partitions.clear()
            self._conn = connect("writer", self.pg, database=self.database)
            self._conn.autocommit = True
            with self._conn.cursor() as cur:
                cur.execute("set synchronous_commit = on; set time zone 'UTC';" + _TEMP_TABLES)
        return self._conn

    def reset(self) -> None:
        """Forget the connection and the cache (after any failure: the database is the truth)."""
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
        self._conn = None
        self._cache = None
        self._partitions.clear()

    def _load(self, cur) -> _Cache:
        q = self.query_id
        cur.execute("select max_event_time_ms from rt.stream_query_state where query_id = %s", (q,))
        row = cur.fetchone()
        max_event = int(row[0]) if row else -(2**62)
        cur.execute(
            "select symbol, state, closed_through_ms from rt.stream_symbol_state"
            " where query_id = %s order by symbol",
            (q,),
        )
        rows = cur.fetchall()
        states = SymbolStates()
        if rows:
            states.index = {s: i for i, (s, _, _) in enumerate(rows)}
            states.matrix = np.vstack([np.frombuffer(bytes(b), dtype=np.float64) for _, b, _ in rows]).copy()
            states.closed_through = np.array(
                [NEVER_MS if c is None else c for _, _, c in rows], dtype=np.int64
            )
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

    def committed(self, batch_id: int) -> bool:
        """Whether the ledger holds this batch of the query (it committed)."""
        with self._connection().cursor() as cur:
            cur.execute(_LEDGER_CHECK, (self.query_id, batch_id))
            return cur.fetchone() is not None

    def state_rows(self) -> int:
        c = self._cache
        return 0 if c is None else len(c.states.index) + len(c.open_bars)

    def state_bytes(self) -> int:
        c = self._cache
        return 0 if c is None else c.states.nbytes() + int(c.open_bars.memory_usage(deep=True).sum())

    def watermark_ms(self) -> int | None:
        c = self._cache
        return None if c is None or c.max_event_time_ms < 0 else c.max_event_time_ms - self.lateness

    # --- one batch ------------------------------------------------------------------------------
    def write(self, batch_id: int, frames: BatchFrames) -> BatchOutcome:
        """Land one micro-batch exactly once. Raises on database errors (after resetting itself),
        never for a row PostgreSQL refuses: such a batch is written again in careful mode."""
        started = time.perf_counter()
        try:
            try:
                return self._write(batch_id, frames, started, careful=False)
            except _ROW_ERRORS as exc:  # the transaction was rolled back: nothing of it is left
                log.warning(
                    "event=batch_refused_by_database batch_id=%d error=%s action=isolate_refused_rows",
                    batch_id,
                    str(exc).strip().splitlines()[0][:300] if str(exc) else type(exc).__name__,
                )
                return self._write(batch_id, frames, started, careful=True)
        except (psycopg2.Error, DatabaseUnavailable):
            self.reset()
            raise

    def _write(self, batch_id: int, frames: BatchFrames, started: float, careful: bool) -> BatchOutcome:
        conn = self._connection()
        q = self.query_id
        steps = _Steps()
        # careful mode asks for every partition (its savepoints may undo one it made, and a partition
        # dropped since the cache learnt it, which refuses the rows, is made again there)
        partitions = None if careful else self._partitions
        with _Transaction(conn, self._partitions) as tx:
            cur = tx.cur
            tx.begin_with(_LEDGER_CHECK, (q, batch_id))
            if cur.fetchone() is not None:
                log.info("event=batch_skipped query_id=%s batch_id=%d reason=already_committed", q, batch_id)
                return BatchOutcome(batch_id, skipped=True, seconds=time.perf_counter() - started)
            steps.mark("begin_ledger_check")
            if self._cache is None:
                self._cache = self._load(cur)
                steps.mark("load_state")
            cache = self._cache

            ticks = frames.ticks.sort_values(["kafka_partition", "kafka_offset"], kind="stable")
            ticks = ticks.drop_duplicates(["symbol", "event_time_ms"], keep="first")
            on_time, late = split_late(ticks, cache.open_bars, cache.states, self.lateness)
            dead_parts = [frames.dead, letters.late_letters(late, self.lateness)]
            steps.mark("dedup_split_late")

            fresh, refused_ticks = _land(
                cur, on_time, functools.partial(land_ticks, partitions=partitions), careful
            )
            dead_parts.append(refused_ticks)
            steps.mark("land_ticks")
            result = process_batch(
                fresh[["symbol", "event_time_ms", "price", "size"]],
                cache.open_bars,
                cache.states,
                cache.max_event_time_ms,
                self.lateness,
                self.idle_close,
                self.thresholds,
            )
            steps.mark("compute")
            if not frames.bars.empty:
                _, refused_bars = _land(cur, frames.bars, _land_raw_bars, careful)
                dead_parts.append(refused_bars)
                steps.mark("land_raw_bars")
            refused = sum(len(d) for d in dead_parts[2:])  # the database's refusals (ticks, bars)
            parts = [d for d in dead_parts if not d.empty]
            dead = pd.concat(parts, ignore_index=True) if parts else letters.empty()
            if not dead.empty:
                _land_dead_letters(cur, dead, careful)
                steps.mark("land_dead_letters")
            statements, params = self._copy_outputs(cur, result, partitions, steps)
            statements += self._copy_state(cur, result, steps)
            statements += [_UPSERT_QUERY, _LEDGER, _HEARTBEAT]
            params.update(
                q=q,
                name=self.query_name,
                max=result.max_event_time_ms,
                batch=batch_id,
                input=frames.input_rows,
                ticks=len(fresh),
                dead=len(dead),
                min_bar_start_ms=int(result.bars["bar_start_ms"].min()) if not result.bars.empty else None,
            )
            # every upsert, the state, the ledger row, the heartbeat and COMMIT: one round trip
            tx.commit_with(statements, params)
            steps.mark("upserts_ledger_commit")
        committed_ms = time.time() * 1000.0
        self._cache = _Cache(result.states, result.open_bars, result.max_event_time_ms)
        latencies = committed_ms - fresh["ingest_time_ms"].to_numpy(np.float64) if len(fresh) else np.empty(0)
        outcome = BatchOutcome(
            batch_id,
            skipped=False,
            input_rows=frames.input_rows,
            fresh_ticks=len(fresh),
            duplicates=len(on_time) - len(fresh) - len(refused_ticks) + (len(frames.ticks) - len(ticks)),
            late=len(late),
            dead=len(dead),
            bars=len(result.bars),
            signals=len(result.signals),
            refused_by_database=refused,
            careful=careful,
            latencies_ms=latencies,
            watermark_ms=result.watermark_ms,
            seconds=time.perf_counter() - started,
            steps=steps.seconds,
        )
        log.info(
            "event=batch_committed query_id=%s batch_id=%d input=%d ticks=%d dup=%d late=%d dead=%d bars=%d "
            "signals=%d refused_by_database=%d seconds=%.3f",
            q,
            batch_id,
            outcome.input_rows,
            outcome.fresh_ticks,
            outcome.duplicates,
            outcome.late,
            outcome.dead,
            outcome.bars,
            outcome.signals,
            outcome.refused_by_database,
            outcome.seconds,
        )
        return outcome

    def _copy_outputs(
        self, cur, result, partitions: Partitions | None, steps: _Steps
    ) -> tuple[list[str], dict]:
        """COPY the batch's bars with their indicators (one temp table) and signals; returns the
        statements that move them into rt.bars_1m, rt.indicators_1m and rt.signals."""
        statements: list[str] = []
        if not result.bars.empty:
            for parent in ("rt.bars_1m", "rt.indicators_1m"):
                ensure_partitions(cur, parent, result.bars["bar_start_ms"], partitions)
            copy_arrow(cur, "t_out", _outputs_table(result.bars, result.indicators))
            statements += [_UPSERT_BARS, _UPSERT_IND]
            if result.bars["is_final"].any():  # t_out holds this batch's bars: drop the open ones now final
                statements.append(_DELETE_CLOSED)
        if not result.signals.empty:
            ensure_partitions(cur, "rt.signals", result.signals["signal_time_ms"], partitions)
            copy_frame(cur, "t_sig", result.signals, list(result.signals.columns))
            statements.append(_INSERT_SIG)
        steps.mark("copy_outputs")
        return statements, {}

    def _copy_state(self, cur, result, steps: _Steps) -> list[str]:
        """COPY the open bars the batch changed and the indicator state of the symbols whose bars
        closed; returns the statements that upsert them."""
        statements: list[str] = []
        if not result.touched_open.empty:
            copy_frame(cur, "t_open", result.touched_open, OPEN_BAR_COLUMNS)
            statements.append(_UPSERT_OPEN)
        if result.changed_symbols:
            rows = result.states.rows(np.array(result.changed_symbols, dtype=object))
            state_frame = pd.DataFrame(
                {
                    "symbol": result.changed_symbols,
                    "state": ["\\x" + result.states.matrix[r].tobytes().hex() for r in rows],
                    "closed_through_ms": result.states.closed_through[rows],
                }
            )
            copy_frame(cur, "t_state", state_frame, ["symbol", "state", "closed_through_ms"])
            statements.append(_UPSERT_STATE)
        steps.mark("copy_state")
        return statements

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


def _land(
    cur, rows: pd.DataFrame, land: Callable[[object, pd.DataFrame], pd.DataFrame], careful: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows landed, dead letters of rows refused): all at once, or in careful mode part by part."""
    if not careful or rows.empty:
        return land(cur, rows), letters.empty()
    landed, refused = isolate(cur, rows, land)
    for label, message in refused:
        log.warning(
            "event=row_refused_by_database kafka_offset=%s error=%s", rows.loc[label, "kafka_offset"], message
        )
    kept = pd.concat(landed) if landed else rows.iloc[:0]
    bad = rows.loc[[label for label, _ in refused]]
    return kept, letters.database_letters(bad, [m for _, m in refused])


def _land_raw_bars(cur, bars: pd.DataFrame) -> pd.DataFrame:
    """Upsert raw bars (the newest ingest of a (symbol, interval, start) wins)."""
    ensure_partitions(cur, "raw.bars", bars["event_time_ms"])
    copy_frame(cur, "t_bars_raw", bars, _BAR_COPY)
    cur.execute(_UPSERT_RAW_BARS)  # in careful mode a later part upserts these again: same values
    return bars


def _insert_dead_letters(cur, dead: pd.DataFrame) -> pd.DataFrame:
    ensure_partitions(cur, "raw.dead_letters", dead["failed_at_ms"])
    copy_frame(cur, "t_dead", dead, letters.DEAD_COPY)
    cur.execute(_INSERT_DEAD)  # in careful mode a later part meets these again: on conflict, nothing
    return dead


def _land_dead_letters(cur, dead: pd.DataFrame, careful: bool) -> None:
    """Dead letters; in careful mode one the database refuses is stored in its last-resort form."""
    if not careful:
        _insert_dead_letters(cur, dead)
        return
    _, refused = isolate(cur, dead, _insert_dead_letters)
    if refused:
        rows = dead.loc[[label for label, _ in refused]]
        _insert_dead_letters(cur, letters.last_resort(rows, [m for _, m in refused]))
