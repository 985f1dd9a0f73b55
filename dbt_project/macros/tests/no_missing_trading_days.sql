{#- Every trading day between a series' (symbol's) first and last date is present. Trading days are
    weekdays that are not in the xnys_closed_weekdays seed (exchange holidays). Returns one row per
    missing (series, day). Counts first (present trading days against the calendar's count over the
    span, assuming one row per day, which unique_combination tests), and lists the missing days only
    for the series that fall short. With the recent slice, only series with recent rows are checked
    (over their whole history). Severity warn by default: halts and thin symbols do have gaps.
    Quality dimension: completeness. -#}
{% test no_missing_trading_days(model, column_name, partition_by='symbol', where=none) %}
{{ config(severity='warn') }}
{%- set slice = recent_slice_condition() %}
with calendar as (
    select day::date as day
    from generate_series('2000-01-01'::date, '2035-12-31'::date, interval '1 day') as days (day)
    where
        extract(isodow from day) < 6
        and day::date not in (select closed_date from {{ ref('xnys_closed_weekdays') }})
),

{% if slice -%}
recent_series as (
    select distinct {{ partition_by }} as series
    from {{ model }}
    where {{ slice }}
),
{%- endif %}

present as (
    select
        {{ partition_by }} as series,
        {{ column_name }}::date as day
    from {{ model }}
    where
        true
        {% if where %}and ({{ where }}){% endif %}
        {% if slice %}and {{ partition_by }} in (select series from recent_series){% endif %}
),

present_trading as not materialized (
    select present.*
    from present
    inner join calendar on present.day = calendar.day
),

spans as (
    select
        series,
        min(day) as first_day,
        max(day) as last_day,
        count(*) as days
    from present_trading
    group by series
),

short_series as (
    select spans.*
    from spans
    where spans.days < (
        select count(*) from calendar
        where calendar.day between spans.first_day and spans.last_day
    )
),

expected as (
    select
        short_series.series,
        calendar.day
    from short_series
    inner join calendar on calendar.day between short_series.first_day and short_series.last_day
)

select
    expected.series,
    expected.day as missing_day
from expected
left join present_trading
    on expected.series = present_trading.series and expected.day = present_trading.day
where present_trading.day is null
{% endtest %}
