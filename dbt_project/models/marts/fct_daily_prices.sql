{{
    config(
        unique_key=['symbol', 'trade_date'],
        incremental_strategy='delete+insert',
        indexes=[{'columns': ['symbol', 'trade_date'], 'unique': true}, {'columns': ['dbt_updated_at']}],
    )
}}

with bars as (
    select * from {{ ref('int_daily_bars_unioned') }}
),

indicators as (
    select * from {{ ref('int_daily_indicators_computed') }}
    where {{ changed_since_last_run() }}
),

final as (
    select
        indicators.symbol,
        indicators.trade_date,
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        bars.volume,
        indicators.ma_50,
        indicators.ma_200,
        indicators.rsi_14,
        indicators.macd,
        indicators.macd_signal,
        indicators.macd_hist,
        bars.source_interval,
        now() as dbt_updated_at
    from indicators
    inner join bars
        on indicators.symbol = bars.symbol and indicators.trade_date = bars.trade_date
)

select * from final
