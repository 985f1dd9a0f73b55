-- Issue 14, the sink's HOT-update lever. The stream revises each open bar of rt.bars_1m and
-- rt.indicators_1m about once per micro-batch (updated_at = now()); V021's BRIN indexes on updated_at
-- made every one of those updates a non-HOT update on PostgreSQL 15 (an indexed column changes: a
-- new entry in every index of the partition). dbt's staging models no longer need them: they read
-- the stream's new rows by updated_at AND by bar_start, from a bound the stream writes itself.

-- 1. Every micro-batch records in its ledger row (same transaction as its bars) the earliest
--    bar_start it wrote to rt.bars_1m / rt.indicators_1m: 'infinity' when it wrote none. A writer
--    that does not say leaves the default, '-infinity' (no bound: a reader then scans everything),
--    so an older sink, or a hand-written ledger row, can only make dbt's read slower, never miss a row.
alter table rt.stream_ledger add column if not exists min_bar_start timestamptz not null default '-infinity';

comment on column rt.stream_ledger.min_bar_start is
    'Earliest bar_start the batch wrote to rt.bars_1m / rt.indicators_1m (infinity: none; -infinity: unknown).';

-- dbt's staging models look up the batches committed since their watermark (macros/watermark.sql,
-- stream_written_since_last_run): the ledger only grows by insert, in commit-time order.
create index if not exists stream_ledger_committed_at_brin on rt.stream_ledger using brin (committed_at);

-- 2. The index on updated_at goes; bar_start, which an update never changes, gets one instead, so
--    the provisional updates of an open bar can be HOT (no index column changes) and dbt's
--    bar_start bound finds the few recent rows of a partition without reading it whole.
drop index if exists rt.bars_1m_updated_at_brin;
drop index if exists rt.indicators_1m_updated_at_brin;
create index if not exists bars_1m_bar_start_brin on rt.bars_1m using brin (bar_start);
create index if not exists indicators_1m_bar_start_brin on rt.indicators_1m using brin (bar_start);
