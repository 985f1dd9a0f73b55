{{
    config(
        partition_by={'field': 'bar_start', 'granularity': 'month'},
        unique_key=['symbol', 'bar_start'],
    )
}}

-- depends_on: {{ source('rt', 'stream_ledger') }}

with source_indicators as (
    select * from {{ source('rt', 'indicators_1m') }}
    where {{ stream_written_since_last_run('updated_at', 'bar_start') }}
),

renamed as (
    select
        upper(trim(symbol))::text as symbol,
        bar_start::timestamptz as bar_start,
        close::float8 as close,
        ema_12::float8 as ema_12,
        ema_26::float8 as ema_26,
        macd::float8 as macd,
        macd_signal::float8 as macd_signal,
        macd_hist::float8 as macd_hist,
        rsi_14::float8 as rsi_14,
        sma_20::float8 as sma_20,
        sma_50::float8 as sma_50,
        sma_200::float8 as sma_200,
        session_vwap::float8 as session_vwap,
        is_final::boolean as is_final,
        updated_at::timestamptz as updated_at
    from source_indicators
),

final as (
    select
        *,
        now() as dbt_updated_at
    from renamed
)

select * from final
