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

{#- Staging's watermark: when this model's previous run began, less var('staging_lookback'). A row
    stamped landed_at = T (its transaction's start) is visible once that transaction commits; every
    landing transaction shorter than the lookback was therefore committed, and seen, by a run that
    began after T + lookback. -#}
{% macro last_run_watermark() -%}
    (
        select coalesce(max(dbt_updated_at), '-infinity'::timestamptz) - interval '{{ var("staging_lookback") }}'
        from {{ this }}
    )
{%- endmacro %}

{#- Staging's filter on its source: rows landed since the watermark. Re-read rows are harmless: the
    partitioned_table upsert leaves unchanged rows alone. -#}
{% macro landed_since_last_run(column) -%}
    {%- if is_incremental() -%}
        {{ column }} >= {{ last_run_watermark() }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- The same filter for a table the streaming sink writes (rt.bars_1m, rt.indicators_1m), bounded by
    bar_start too, so the scan needs no index on the landing-time column (such an index would make
    every provisional update of an open bar a non-HOT update: db/migrations/V024). Each micro-batch
    writes its rows and its ledger row in one transaction; the ledger row records the earliest
    bar_start the batch wrote (min_bar_start) and its committed_at (clock_timestamp() at the insert)
    is at or after the rows' landing time (the transaction's now()). So every row landed since the
    watermark belongs to a batch committed since the watermark and starts at or after that batch's
    min_bar_start: the bound holds for late ticks, for a backlog drained hours late and for a new
    query, whatever the wall clock says. No batch since the watermark: 'infinity', nothing to read.
    Any other writer of these tables must add a ledger row the same way (sample_data does). -#}
{% macro stream_written_since_last_run(column='updated_at', bar_column='bar_start') -%}
    {%- if is_incremental() -%}
        {{ column }} >= {{ last_run_watermark() }}
        and {{ bar_column }} >= {{ stream_bar_bound(last_run_watermark()) }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- The earliest bar_start among the rows the stream wrote to rt.bars_1m / rt.indicators_1m at or
    after `since` (an SQL timestamptz expression): the smallest min_bar_start of the ledger rows
    committed since then ('infinity' if none). See stream_written_since_last_run for why it holds. -#}
{% macro stream_bar_bound(since) -%}
    (
        select coalesce(min(ledger.min_bar_start), 'infinity'::timestamptz)
        from {{ source('rt', 'stream_ledger') }} as ledger
        where ledger.committed_at >= {{ since }}
    )
{%- endmacro %}
