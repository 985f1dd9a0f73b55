{{ config(materialized='table', indexes=[{'columns': ['symbol'], 'unique': true}]) }}

-- One row per symbol seen in daily prices or the stream: its history span and latest values.
-- Read by index probes on int_daily_indicators_computed's (symbol, trade_date) index instead of
-- grouping its 1.26M rows: the symbols by a skip scan (one probe per symbol), then each symbol's
-- first and last day; the last day's row_num is the number of days (it counts the symbol's rows).

with recursive daily_symbols as (
    (
        select symbol
        from {{ ref('int_daily_indicators_computed') }}
        order by symbol
        limit 1
    )
    union all
    select (
        select later.symbol
        from {{ ref('int_daily_indicators_computed') }} as later
        where later.symbol > daily_symbols.symbol
        order by later.symbol
        limit 1
    )
    from daily_symbols
    where daily_symbols.symbol is not null
),

daily as (
    select
        daily_symbols.symbol,
        first_day.trade_date as first_trade_date,
        last_day.trade_date as last_trade_date,
        last_day.row_num as trading_days,
        last_day.close as last_close,
        last_day.volume as last_volume
    from daily_symbols
    cross join
        lateral (
            select days.trade_date
            from {{ ref('int_daily_indicators_computed') }} as days
            where days.symbol = daily_symbols.symbol
            order by days.trade_date
            limit 1
        ) as first_day
    cross join lateral (
        select
            days.trade_date,
            days.row_num,
            days.close,
            days.volume
        from {{ ref('int_daily_indicators_computed') }} as days
        where days.symbol = daily_symbols.symbol
        order by days.trade_date desc
        limit 1
    ) as last_day
),

intraday as (
    select
        symbol,
        max(bar_start) as last_bar_start
    from {{ ref('stg_rt__bars_1m') }}
    group by symbol
),

listing as (
    select distinct on (symbol)
        symbol,
        currency,
        exchange
    from {{ ref('stg_raw__ticks') }}
    where currency is not null or exchange is not null
    order by symbol asc, event_time desc
),

symbols as (
    select symbol from daily
    union
    select symbol from intraday
),

final as (
    select
        symbols.symbol,
        listing.exchange,
        listing.currency,
        daily.first_trade_date,
        daily.last_trade_date,
        coalesce(daily.trading_days, 0) as trading_days,
        daily.last_close,
        daily.last_volume,
        intraday.last_bar_start,
        intraday.symbol is not null as has_intraday,
        now() as dbt_updated_at
    from symbols
    left join daily on symbols.symbol = daily.symbol
    left join intraday on symbols.symbol = intraday.symbol
    left join listing on symbols.symbol = listing.symbol
)

select * from final
