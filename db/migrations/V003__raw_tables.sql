-- Raw landing tables, one per Kafka topic, columns as in common/contract.py (times as timestamptz).
-- Primary keys include the partition key, as PostgreSQL requires; they are the dedup keys.

create table if not exists raw.ticks (
    symbol          text             not null,
    event_time      timestamptz      not null,
    price           double precision not null,
    size            double precision not null,
    bid             double precision,
    ask             double precision,
    day_volume      double precision,
    currency        text,
    exchange        text,
    source          text             not null,
    ingest_time     timestamptz      not null,
    kafka_partition integer,
    kafka_offset    bigint,
    landed_at       timestamptz      not null default now(),
    primary key (symbol, event_time)
) partition by range (event_time);

comment on table raw.ticks is 'Ticks from market.ticks.v1, deduplicated on (symbol, event_time). Daily partitions.';

create table if not exists raw.bars (
    symbol          text             not null,
    interval        text             not null,
    bar_start       timestamptz      not null,
    open            double precision not null,
    high            double precision not null,
    low             double precision not null,
    close           double precision not null,
    adj_close       double precision,
    volume          double precision not null,
    source          text             not null,
    ingest_time     timestamptz      not null,
    kafka_partition integer,
    kafka_offset    bigint,
    landed_at       timestamptz      not null default now(),
    primary key (symbol, interval, bar_start)
) partition by range (bar_start);

comment on table raw.bars is 'OHLCV bars from market.bars.v1 (backfills, replays), one row per (symbol, interval, start). Monthly partitions.';

create table if not exists raw.dead_letters (
    failed_at        timestamptz not null,
    kafka_topic      text        not null,
    kafka_partition  integer     not null,
    kafka_offset     bigint      not null,
    stage            text        not null check (stage in ('ingest', 'stream')),
    reason           text        not null,
    detail           text        not null,
    source           text        not null,
    intended_topic   text        not null,
    symbol           text,
    payload          text        not null,
    payload_encoding text        not null default 'utf-8',
    landed_at        timestamptz not null default now(),
    primary key (failed_at, kafka_topic, kafka_partition, kafka_offset)
) partition by range (failed_at);

comment on table raw.dead_letters is 'Refused records with reason, from market.deadletter.v1 (stage ingest) and from the stream job (stage stream). Monthly partitions.';

create index if not exists dead_letters_reason_idx on raw.dead_letters (reason, failed_at);

insert into raw.partition_policy (parent_table, granularity, premake, retention) values
    ('raw.ticks',        'day',   3, interval '30 days'),
    ('raw.bars',         'month', 2, interval '30 years'),
    ('raw.dead_letters', 'month', 2, interval '180 days')
on conflict (parent_table) do nothing;

select * from raw.maintain_partitions();

grant select, insert, update, delete on raw.ticks, raw.bars, raw.dead_letters to market_writer;
grant select on raw.ticks, raw.bars, raw.dead_letters to market_reader;
