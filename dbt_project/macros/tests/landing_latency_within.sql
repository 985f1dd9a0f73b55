{#- Rows landed within `lookback` reached the database at most max_latency after their event
    time (column_name). Returns the late rows. Severity warn by default. Quality dimension:
    timeliness. -#}
{% test landing_latency_within(model, column_name, landed_column, max_latency, lookback='1 day') %}
{{ config(severity='warn') }}
select
    {{ column_name }} as event_time,
    {{ landed_column }} as landed_at,
    {{ landed_column }} - {{ column_name }} as latency
from {{ model }}
where
    {{ landed_column }} >= now() - interval '{{ lookback }}'
    and {{ landed_column }} - {{ column_name }} > interval '{{ max_latency }}'
{% endtest %}
