-- Real-time outputs of spark_streaming (issue: Spark Structured Streaming). Column names are a
-- contract for dbt sources and the dashboard: add columns in new migrations, never rename.

create table if not exists rt.bars_1m (
    symbol       text             not null,
    bar_start    timestamptz      not null,
    open         double precision not null,
    high         double precision not null,
    low          double precision not null,
    close        double precision not null,
    volume       double precision not null,
    vwap         double precision,
    trade_count  integer          not null,
    is_final     boolean          not null default false,
    updated_at   timestamptz      not null default now(),
    primary key (symbol, bar_start)
) partition by range (bar_start);

comment on table rt.bars_1m is '1-minute OHLCV bars built from ticks; the still-forming bar has is_final = false and is revised by later batches.';

create table if not exists rt.indicators_1m (
    symbol        text             not null,
    bar_start     timestamptz      not null,
    close         double precision not null,
    ema_12        double precision,
    ema_26        double precision,
    macd          double precision,
    macd_signal   double precision,
    macd_hist     double precision,
    rsi_14        double precision,
    sma_20        double precision,
    sma_50        double precision,
    sma_200       double precision,
    session_vwap  double precision,
    is_final      boolean          not null default false,
    updated_at    timestamptz      not null default now(),
    primary key (symbol, bar_start)
) partition by range (bar_start);

comment on table rt.indicators_1m is 'Indicators on 1-minute bars (TA-Lib definitions, null during warm-up); provisional while is_final = false.';

create table if not exists rt.signals (
    symbol       text             not null,
    signal_time  timestamptz      not null,
    signal_type  text             not null check (signal_type in (
        'sma_cross_up', 'sma_cross_down',
        'macd_cross_up', 'macd_cross_down',
        'rsi_cross_above_30', 'rsi_cross_below_30',
        'rsi_cross_above_70', 'rsi_cross_below_70',
        'volume_spike', 'price_spike_up', 'price_spike_down',
        'gap_up', 'gap_down'
    )),
    value        double precision,
    threshold    double precision,
    detail       text,
    created_at   timestamptz      not null default now(),
    primary key (symbol, signal_time, signal_type)
) partition by range (signal_time);

comment on table rt.signals is 'Pattern signals detected on closed 1-minute bars.';

insert into raw.partition_policy (parent_table, granularity, premake, retention) values
    ('rt.bars_1m',       'day',   3, interval '90 days'),
    ('rt.indicators_1m', 'day',   3, interval '90 days'),
    ('rt.signals',       'month', 2, interval '2 years')
on conflict (parent_table) do nothing;

select * from raw.maintain_partitions();

grant select, insert, update, delete on rt.bars_1m, rt.indicators_1m, rt.signals to market_writer;
grant select on rt.bars_1m, rt.indicators_1m, rt.signals to market_reader;
