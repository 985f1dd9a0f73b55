{#- Every trading day between a symbol's first and last date is present. Trading days are weekdays
    that are not in the xnys_closed_weekdays seed (exchange holidays). Returns one row per missing
    (symbol, day). Severity warn by default: trading halts and thin symbols do have gaps.
    Quality dimension: completeness. -#}
{% test no_missing_trading_days(model, column_name, partition_by='symbol', where=none) %}
{{ config(severity='warn') }}
with present as (
    select
        {{ partition_by }} as series,
        {{ column_name }}::date as day
    from {{ model }}
    {% if where %}where {{ where }}{% endif %}
),

spans as (
    select
        series,
        min(day) as first_day,
        max(day) as last_day
    from present
    group by series
),

expected as (
    select
        spans.series,
        calendar.day::date as day
    from spans
    cross join lateral generate_series(spans.first_day, spans.last_day, interval '1 day') as calendar (day)
    where
        extract(isodow from calendar.day) < 6
        and calendar.day::date not in (select closed_date from {{ ref('xnys_closed_weekdays') }})
)

select
    expected.series,
    expected.day as missing_day
from expected
left join present on expected.series = present.series and expected.day = present.day
where present.day is null
{% endtest %}
