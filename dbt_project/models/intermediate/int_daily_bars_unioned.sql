{{
    config(
        unique_key=['symbol', 'trade_date'],
        incremental_strategy='delete+insert',
        indexes=[{'columns': ['symbol', 'trade_date'], 'unique': true}, {'columns': ['dbt_updated_at']}],
    )
}}

-- One OHLCV row per symbol and trade date: the daily bar landed by a backfill when there is one,
-- else the day rolled up from intraday bars (raw intraday bars of the finest interval present,
-- then the stream's 1-minute bars).
-- Incremental: the (symbol, trade_date) pairs with changed staging rows are rebuilt from all their
-- rows; the re-read is bounded by the changed rows' time span, so only those partitions are read.

with changed_rows as (
    {% if is_incremental() %}
        select
            symbol,
            trade_date,
            bar_start
        from {{ ref('stg_raw__bars') }}
        where {{ changed_since_last_run() }}
        union all
        select
            symbol,
            trade_date,
            bar_start
        from {{ ref('stg_rt__bars_1m') }}
        where {{ changed_since_last_run() }}
    {% else %}
        select
            null::text as symbol,
            null::date as trade_date,
            null::timestamptz as bar_start
        where false
    {% endif %}
),

changed_days as (
    select distinct
        symbol,
        trade_date
    from changed_rows
),

raw_bars as (
    select * from {{ ref('stg_raw__bars') }}
    {% if is_incremental() %}
        where
            bar_start >= (select min(bar_start) - interval '1 day' from changed_rows)
            and bar_start < (select max(bar_start) + interval '1 day' from changed_rows)
            and (symbol, trade_date) in (select changed_days.* from changed_days)
    {% endif %}
),

rt_bars as (
    select * from {{ ref('stg_rt__bars_1m') }}
    {% if is_incremental() %}
        where
            bar_start >= (select min(bar_start) - interval '1 day' from changed_rows)
            and bar_start < (select max(bar_start) + interval '1 day' from changed_rows)
            and (symbol, trade_date) in (select changed_days.* from changed_days)
    {% endif %}
),

daily_bars as (
    select
        {{ daily_bar_columns() }},
        '1d' as source_interval,
        0 as source_rank
    from raw_bars
    where bar_interval = '1d'
),

intraday_bars as (
    select
        {{ daily_bar_columns() }},
        bar_start,
        bar_interval as source_interval,
        {{ interval_minutes('bar_interval') }} as source_rank
    from raw_bars
    where bar_interval <> '1d'
    union all
    select
        {{ daily_bar_columns() }},
        bar_start,
        'rt_1m' as source_interval,
        100000 as source_rank
    from rt_bars
),

intraday_rolled_up as (
    select
        symbol,
        trade_date,
        (array_agg(open order by bar_start))[1] as open,
        max(high) as high,
        min(low) as low,
        (array_agg(close order by bar_start desc))[1] as close,
        sum(volume) as volume,
        source_interval,
        source_rank
    from intraday_bars
    group by symbol, trade_date, source_interval, source_rank
),

candidates as (
    select * from daily_bars
    union all
    select * from intraday_rolled_up
),

best_per_day as (
    select distinct on (symbol, trade_date)
        {{ daily_bar_columns() }},
        source_interval
    from candidates
    order by symbol, trade_date, source_rank
),

final as (
    select
        *,
        now() as dbt_updated_at
    from best_per_day
)

select * from final
