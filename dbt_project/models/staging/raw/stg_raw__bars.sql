{{
    config(
        partition_by={'field': 'bar_start', 'granularity': 'month'},
        unique_key=['symbol', 'bar_interval', 'bar_start'],
        partition_indexes=[['dbt_updated_at'], ['symbol', 'trade_date']],
    )
}}

with source_bars as (
    select * from {{ source('raw', 'bars') }}
    where {{ landed_since_last_run('landed_at') }}
),

renamed as (
    select
        upper(trim(symbol))::text as symbol,
        interval::text as bar_interval,
        bar_start::timestamptz as bar_start,
        (bar_start at time zone '{{ var("exchange_timezone") }}')::date as trade_date,
        open::float8 as open,
        high::float8 as high,
        low::float8 as low,
        close::float8 as close,
        adj_close::float8 as adj_close,
        volume::float8 as volume,
        source::text as source,
        ingest_time::timestamptz as ingest_time,
        landed_at::timestamptz as landed_at
    from source_bars
),

cleaned as (
    -- NaN is a valid float8 but never a price: such rows are dropped here (ingest refuses them too)
    select * from renamed
    where
        open <> 'NaN'::float8
        and high <> 'NaN'::float8
        and low <> 'NaN'::float8
        and close <> 'NaN'::float8
        and volume <> 'NaN'::float8
),

final as (
    select
        *,
        now() as dbt_updated_at
    from cleaned
)

select * from final
