-- Lateness per symbol (spark_streaming/compute.py): a tick is late only against its own symbol's
-- newest event (kept in rt.stream_open_bars) or when its bar is already final. The end of each
-- symbol's newest final bar is kept here, written in the same transaction as the state it belongs to.
-- Rows from before this column hold null: no final bar is known, only the newest-event rule applies.

alter table rt.stream_symbol_state add column if not exists closed_through_ms bigint;

comment on column rt.stream_symbol_state.closed_through_ms is
    'End (epoch ms) of the symbol''s newest final 1-minute bar: a later tick before it is stale_time.';
