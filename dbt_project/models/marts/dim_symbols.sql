{{ config(materialized='table', indexes=[{'columns': ['symbol'], 'unique': true}]) }}

-- One row per symbol seen in daily prices or the stream: its history span and latest values.

with daily as (
    select
        symbol,
        min(trade_date) as first_trade_date,
        max(trade_date) as last_trade_date,
        count(*) as trading_days
    from {{ ref('fct_daily_prices') }}
    group by symbol
),

latest_daily as (
    -- one index probe per symbol on (symbol, trade_date)
    select
        daily.symbol,
        last_day.close as last_close,
        last_day.volume as last_volume
    from daily
    cross join lateral (
        select
            prices.close,
            prices.volume
        from {{ ref('fct_daily_prices') }} as prices
        where prices.symbol = daily.symbol and prices.trade_date = daily.last_trade_date
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
        latest_daily.last_close,
        latest_daily.last_volume,
        intraday.last_bar_start,
        intraday.symbol is not null as has_intraday,
        now() as dbt_updated_at
    from symbols
    left join daily on symbols.symbol = daily.symbol
    left join latest_daily on symbols.symbol = latest_daily.symbol
    left join intraday on symbols.symbol = intraday.symbol
    left join listing on symbols.symbol = listing.symbol
)

select * from final
