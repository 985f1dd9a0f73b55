{{
    config(
        partition_by={'field': 'failed_at', 'granularity': 'month'},
        unique_key=['failed_at', 'kafka_topic', 'kafka_partition', 'kafka_offset'],
    )
}}

with source_dead_letters as (
    select * from {{ source('raw', 'dead_letters') }}
    where {{ landed_since_last_run('landed_at') }}
),

renamed as (
    select
        failed_at::timestamptz as failed_at,
        kafka_topic::text as kafka_topic,
        kafka_partition::integer as kafka_partition,
        kafka_offset::bigint as kafka_offset,
        stage::text as stage,
        reason::text as reason,
        detail::text as detail,
        source::text as source,
        intended_topic::text as intended_topic,
        upper(trim(symbol))::text as symbol,
        length(payload)::integer as payload_chars,
        payload_encoding::text as payload_encoding,
        landed_at::timestamptz as landed_at
    from source_dead_letters
),

final as (
    select
        *,
        now() as dbt_updated_at
    from renamed
)

select * from final
