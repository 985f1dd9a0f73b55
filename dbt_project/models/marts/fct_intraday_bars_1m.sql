{{
    config(
        materialized='partitioned_table',
        partition_by={'field': 'bar_start', 'granularity': 'month'},
        unique_key=['symbol', 'bar_start'],
    )
}}

-- The stream's 1-minute bars with their indicators, for the dashboard's intraday charts.

with bars as (
    select * from {{ ref('stg_rt__bars_1m') }}
),

indicators as (
    select * from {{ ref('stg_rt__indicators_1m') }}
),

changed_bars as (
    select
        symbol,
        bar_start
    from bars
    where {{ changed_since_last_run() }}
    union
    select
        symbol,
        bar_start
    from indicators
    where {{ changed_since_last_run() }}
),

final as (
    select
        bars.symbol,
        bars.bar_start,
        bars.trade_date,
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        bars.volume,
        bars.vwap,
        bars.trade_count,
        bars.is_final,
        indicators.sma_20,
        indicators.sma_50,
        indicators.sma_200,
        indicators.ema_12,
        indicators.ema_26,
        indicators.rsi_14,
        indicators.macd,
        indicators.macd_signal,
        indicators.macd_hist,
        indicators.session_vwap,
        now() as dbt_updated_at
    from changed_bars
    inner join bars on changed_bars.symbol = bars.symbol and changed_bars.bar_start = bars.bar_start
    left join indicators on bars.symbol = indicators.symbol and bars.bar_start = indicators.bar_start
)

select * from final
