{{
    config(
        partition_by={'field': 'signal_time', 'granularity': 'month'},
        unique_key=['symbol', 'signal_time', 'signal_type'],
    )
}}

with source_signals as (
    select * from {{ source('rt', 'signals') }}
    where {{ landed_since_last_run('created_at') }}
),

renamed as (
    select
        upper(trim(symbol))::text as symbol,
        signal_time::timestamptz as signal_time,
        signal_type::text as signal_type,
        case
            when signal_type like '%\_up' or signal_type like '%above%' then 'bullish'
            when signal_type like '%\_down' or signal_type like '%below%' then 'bearish'
            else 'neutral'
        end as direction,
        value::float8 as signal_value,
        threshold::float8 as threshold,
        detail::text as detail,
        created_at::timestamptz as created_at
    from source_signals
),

final as (
    select
        *,
        now() as dbt_updated_at
    from renamed
)

select * from final
