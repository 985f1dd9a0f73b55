{{
    config(
        materialized='partitioned_table',
        partition_by={'field': 'signal_time', 'granularity': 'month'},
        unique_key=['symbol', 'signal_time', 'signal_type'],
    )
}}

-- Pattern signals from the stream with the bar they fired on, for the dashboard's markers.

with signals as (
    select * from {{ ref('stg_rt__signals') }}
    where {{ changed_since_last_run() }}
),

bars as (
    select * from {{ ref('stg_rt__bars_1m') }}
),

final as (
    select
        signals.symbol,
        signals.signal_time,
        signals.signal_type,
        signals.direction,
        signals.signal_value,
        signals.threshold,
        signals.detail,
        bars.close as bar_close,
        bars.volume as bar_volume,
        signals.created_at,
        now() as dbt_updated_at
    from signals
    left join bars
        on signals.symbol = bars.symbol and date_trunc('minute', signals.signal_time) = bars.bar_start
)

select * from final
