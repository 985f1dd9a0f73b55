-- State of the streaming job (spark_streaming): the exactly-once ledger, the per-query watermark,
-- per-symbol indicator state, the still-open 1-minute bars, and a heartbeat. Each micro-batch writes
-- its outputs and all of these in ONE transaction; a batch id already in the ledger is skipped.
-- Everything is keyed by the Spark query id (stable for one checkpoint folder).

create table if not exists rt.stream_ledger (
    query_id     text        not null,
    batch_id     bigint      not null,
    query_name   text        not null,
    input_rows   integer     not null,
    tick_rows    integer     not null,
    dead_rows    integer     not null,
    committed_at timestamptz not null default clock_timestamp(),
    primary key (query_id, batch_id)
);

comment on table rt.stream_ledger is 'One row per committed micro-batch of a streaming query: a replayed batch id is skipped.';

create table if not exists rt.stream_query_state (
    query_id          text        primary key,
    query_name        text        not null,
    max_event_time_ms bigint      not null,
    last_batch_id     bigint      not null,
    updated_at        timestamptz not null default now()
);

comment on table rt.stream_query_state is 'Newest event time seen by a query (its watermark is this minus the allowed delay).';

create table if not exists rt.stream_symbol_state (
    query_id   text        not null,
    symbol     text        not null,
    state      bytea       not null,
    updated_at timestamptz not null default now(),
    primary key (query_id, symbol)
);

comment on table rt.stream_symbol_state is 'Indicator state of a symbol through its last closed bar: float64 vector, layout in spark_streaming/indicators.py.';

create table if not exists rt.stream_open_bars (
    query_id      text             not null,
    symbol        text             not null,
    bar_start_ms  bigint           not null,
    open          double precision not null,
    high          double precision not null,
    low           double precision not null,
    close         double precision not null,
    volume        double precision not null,
    pv            double precision not null,
    trade_count   integer          not null,
    first_ms      bigint           not null,
    last_ms       bigint           not null,
    primary key (query_id, symbol, bar_start_ms)
);

comment on table rt.stream_open_bars is '1-minute bars not yet closed by the watermark, with the times of their first and last tick.';

create table if not exists rt.stream_heartbeat (
    query_name     text        primary key,
    query_id       text        not null,
    last_batch_id  bigint,
    last_batch_at  timestamptz,
    beat_at        timestamptz not null default now(),
    status         text        not null
);

comment on table rt.stream_heartbeat is 'Liveness of each streaming query: beat_at is refreshed while the query runs, also when idle.';

grant select, insert, update, delete on rt.stream_ledger, rt.stream_query_state, rt.stream_symbol_state,
    rt.stream_open_bars, rt.stream_heartbeat to market_writer;
grant select on rt.stream_ledger, rt.stream_query_state, rt.stream_heartbeat to market_reader;
