{{
    config(
        unique_key=['symbol', 'trade_date'],
        incremental_strategy='delete+insert',
        indexes=[{'columns': ['symbol', 'trade_date'], 'unique': true}],
        pre_hook=[
            "{% if is_incremental() %}
             delete from {{ this }} as crosses
             using (
                 select symbol, min(trade_date) as from_date
                 from {{ ref('int_daily_indicators_computed') }}
                 where dbt_updated_at > (select coalesce(max(dbt_updated_at), '-infinity') from {{ this }})
                 group by symbol
             ) as changed
             where crosses.symbol = changed.symbol and crosses.trade_date >= changed.from_date
             {% endif %}"
        ],
    )
}}

-- Golden cross: MA50 moves above MA200 (it was at or below it on the previous trading day);
-- death cross: MA50 moves below MA200 (it was at or above it). Days before both MAs exist never
-- cross. Incremental: a symbol's crosses from its first recomputed day are deleted (pre-hook) and
-- found again from the recomputed rows, which carry the previous day's MAs.

with indicators as (
    select * from {{ ref('int_daily_indicators_computed') }}
    where {{ changed_since_last_run() }}
),

crosses as (
    select
        symbol,
        trade_date,
        case
            when ma_50 > ma_200 and previous_ma_50 <= previous_ma_200 then 'golden'
            when ma_50 < ma_200 and previous_ma_50 >= previous_ma_200 then 'death'
        end as cross_type,
        ma_50,
        ma_200
    from indicators
    where previous_ma_200 is not null
),

final as (
    select
        *,
        now() as dbt_updated_at
    from crosses
    where cross_type is not null
)

select * from final
