{{
    config(
        partition_by={'field': 'event_time', 'granularity': 'month'},
        unique_key=['symbol', 'event_time'],
    )
}}

with source_ticks as (
    select * from {{ source('raw', 'ticks') }}
    where {{ landed_since_last_run('landed_at') }}
),

renamed as (
    select
        upper(trim(symbol))::text as symbol,
        event_time::timestamptz as event_time,
        (event_time at time zone '{{ var("exchange_timezone") }}')::date as trade_date,
        price::float8 as price,
        size::float8 as size,
        bid::float8 as bid,
        ask::float8 as ask,
        day_volume::float8 as day_volume,
        currency::text as currency,
        exchange::text as exchange,
        source::text as source,
        ingest_time::timestamptz as ingest_time,
        landed_at::timestamptz as landed_at,
        extract(epoch from (landed_at - event_time))::float8 as landing_latency_s
    from source_ticks
    where price <> 'NaN'::float8
),

final as (
    select
        *,
        now() as dbt_updated_at
    from renamed
)

select * from final
