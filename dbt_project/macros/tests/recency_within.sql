{#- The newest value of column_name is at most max_age old (an interval, e.g. '15 minutes');
    an empty table fails. Severity warn by default: stale data is a warning, not a reason to stop
    the marts. Quality dimension: freshness. -#}
{% test recency_within(model, column_name, max_age, where=none) %}
{{ config(severity='warn') }}
with latest as (
    select max({{ column_name }}) as newest
    from {{ model }}
    {% if where %}where {{ where }}{% endif %}
)

select
    newest,
    now() - newest as age
from latest
where newest is null or newest < now() - interval '{{ max_age }}'
{% endtest %}
