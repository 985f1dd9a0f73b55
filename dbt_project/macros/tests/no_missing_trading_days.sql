{#- Every trading day between a series' (symbol's) first and last date is present. Trading days are
    weekdays that are not in the xnys_closed_weekdays seed (exchange holidays); rows on other days
    are ignored. Returns one row per missing (series, day). Severity warn by default: halts and thin
    symbols do have gaps. Quality dimension: completeness.
    With the recent slice since the test's last pass (a daily run), only the neighbours of the
    recent rows are checked: a series is complete when each of its rows is followed by the next
    trading day, and a pass vouched for every pair of neighbours written before it, so the new pairs
    are those with a recent row on either side. Each recent row's previous and next trading-day rows
    are found through the (series, day) index, and the trading days strictly between them are
    missing. (A row deleted without rewriting a neighbour would leave its gap unseen until a full
    check, `--vars '{dq_test_window: all}'`; the incremental models never delete without rewriting.)
    Otherwise (never passed, or dq_test_window all) every series with a recent row, or every series,
    is checked over its whole history: present trading days are counted against the calendar's count
    over the series' span (one row per day, which unique_combination tests), and the missing days are
    listed for the series that fall short. -#}
{% test no_missing_trading_days(model, column_name, partition_by='symbol', where=none) %}
{{ config(severity='warn') }}
{%- set slice = recent_slice_condition() %}
{%- set lookup = slice and recent_slice_is_since_pass() %}
{%- set closed_days = ref('xnys_closed_weekdays') %}
with calendar as materialized (
    select
        day::date as day,
        row_number() over (order by day) as day_number
    from generate_series('2000-01-01'::date, '2035-12-31'::date, interval '1 day') as days (day)
    where {{ is_trading_day('day::date', closed_days) }}
),

{% if lookup -%}
recent_days as (
    select distinct
        {{ partition_by }} as series,
        {{ column_name }}::date as day
    from {{ model }}
    where
        {{ slice }}
        {% if where %}and ({{ where }}){% endif %}
        and {{ is_trading_day(column_name ~ '::date', closed_days) }}
),

neighbours as (
    select
        recent_days.series,
        recent_days.day,
        previous_day.day as previous_day,
        next_day.day as next_day
    from recent_days
    left join lateral (
        select {{ column_name }}::date as day
        from {{ model }} as m
        where
            m.{{ partition_by }} = recent_days.series
            and m.{{ column_name }} < recent_days.day
            and {{ is_trading_day('m.' ~ column_name ~ '::date', closed_days) }}
            {% if where %}and ({{ where }}){% endif %}
        order by m.{{ column_name }} desc
        limit 1
    ) as previous_day on true
    left join lateral (
        select {{ column_name }}::date as day
        from {{ model }} as m
        where
            m.{{ partition_by }} = recent_days.series
            and m.{{ column_name }} > recent_days.day
            and {{ is_trading_day('m.' ~ column_name ~ '::date', closed_days) }}
            {% if where %}and ({{ where }}){% endif %}
        order by m.{{ column_name }}
        limit 1
    ) as next_day on true
),

pairs as (
    select
        series,
        previous_day as from_day,
        day as to_day
    from neighbours
    where previous_day is not null
    union
    select
        series,
        day as from_day,
        next_day as to_day
    from neighbours
    where next_day is not null
),

gaps as (
    select
        pairs.series,
        from_calendar.day_number as from_number,
        to_calendar.day_number as to_number
    from pairs
    inner join calendar as from_calendar on pairs.from_day = from_calendar.day
    inner join calendar as to_calendar on pairs.to_day = to_calendar.day
    where to_calendar.day_number - from_calendar.day_number > 1
)

select
    gaps.series,
    calendar.day as missing_day
from gaps
inner join calendar
    on calendar.day_number > gaps.from_number and calendar.day_number < gaps.to_number
{%- else -%}
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
{%- endif %}
{% endtest %}


{#- A weekday that is not an exchange holiday (closed_days: the xnys_closed_weekdays seed). An
    expression, not a join with the calendar, so that an index scan can filter by it as it goes. -#}
{% macro is_trading_day(day, closed_days) -%}
    (extract(isodow from {{ day }}) < 6 and {{ day }} not in (select closed_date from {{ closed_days }}))
{%- endmacro %}
