{#- The newest value of column_name is at most max_age old (an interval, e.g. '15 minutes');
    an empty table fails. Severity warn by default: stale data is a warning, not a reason to stop
    the marts. Quality dimension: freshness.
    A passing check stops at the first row young enough (`limit 1`); the newest value is looked for
    only when there is none, for the failure's message. -#}
{% test recency_within(model, column_name, max_age, where=none) %}
{{ config(severity='warn') }}
{%- set condition = '(' ~ where ~ ')' if where else 'true' %}
with young_enough as (
    select 1 as found
    from {{ model }}
    where {{ condition }} and {{ column_name }} >= now() - interval '{{ max_age }}'
    limit 1
),

latest as (
    select max({{ column_name }}) as newest
    from {{ model }}
    where {{ condition }} and not exists (select from young_enough)
)

select
    newest,
    now() - newest as age
from latest
where not exists (select from young_enough)
{% endtest %}
