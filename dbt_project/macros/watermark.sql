{#- Rows of `relation` written after this model's last run: `<column> > max(<column>) in this`.
    Every incremental model stamps its rows with dbt_updated_at = now() (its transaction's time),
    so a downstream model reads exactly what changed upstream since it last ran. -#}
{% macro changed_since_last_run(column='dbt_updated_at') -%}
    {%- if is_incremental() -%}
        {{ column }} > (select coalesce(max(dbt_updated_at), '-infinity'::timestamptz) from {{ this }})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- Length of a bar interval code ('1m', '5m', '1h', '1d') in minutes: the finer the better when
    intraday bars of several lengths cover the same day. -#}
{% macro interval_minutes(code) -%}
    case
        when {{ code }} ~ '^[0-9]+m$' then left({{ code }}, -1)::integer
        when {{ code }} ~ '^[0-9]+h$' then left({{ code }}, -1)::integer * 60
        when {{ code }} ~ '^[0-9]+d$' then left({{ code }}, -1)::integer * 1440
    end
{%- endmacro %}

{#- Staging's filter on its source: rows landed since this model's previous run began, less
    var('staging_lookback'). A row stamped landed_at = T (its transaction's start) is visible once
    that transaction commits; every landing transaction shorter than the lookback was therefore
    committed, and seen, by a run that began after T + lookback. Re-read rows are harmless: the
    partitioned_table upsert leaves unchanged rows alone. -#}
{% macro landed_since_last_run(column) -%}
    {%- if is_incremental() -%}
        {{ column }} >= (
            select coalesce(max(dbt_updated_at), '-infinity'::timestamptz) - interval '{{ var("staging_lookback") }}'
            from {{ this }}
        )
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}
