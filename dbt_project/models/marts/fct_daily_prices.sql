{{
    config(
        unique_key=['symbol', 'trade_date'],
        incremental_strategy='delete+insert',
        indexes=[{'columns': ['symbol', 'trade_date'], 'unique': true}, {'columns': ['dbt_updated_at']}],
    )
}}

with indicators as (
    select * from {{ ref('int_daily_indicators_computed') }}
    where {{ changed_since_last_run() }}
),

final as (
    select
        {{ daily_bar_columns() }},
        ma_50,
        ma_200,
        rsi_14,
        macd,
        macd_signal,
        macd_hist,
        source_interval,
        now() as dbt_updated_at
    from indicators
)

select * from final
