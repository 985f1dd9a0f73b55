{{
    config(
        partition_by={'field': 'bar_start', 'granularity': 'month'},
        unique_key=['symbol', 'bar_start'],
    )
}}

-- depends_on: {{ source('rt', 'stream_ledger') }}

with source_bars as (
    select * from {{ source('rt', 'bars_1m') }}
    where {{ stream_written_since_last_run('updated_at', 'bar_start') }}
),

renamed as (
    select
        upper(trim(symbol))::text as symbol,
        bar_start::timestamptz as bar_start,
        (bar_start at time zone '{{ var("exchange_timezone") }}')::date as trade_date,
        open::float8 as open,
        high::float8 as high,
        low::float8 as low,
        close::float8 as close,
        volume::float8 as volume,
        vwap::float8 as vwap,
        trade_count::integer as trade_count,
        is_final::boolean as is_final,
        updated_at::timestamptz as updated_at
    from source_bars
),

final as (
    select
        *,
        now() as dbt_updated_at
    from renamed
)

select * from final
