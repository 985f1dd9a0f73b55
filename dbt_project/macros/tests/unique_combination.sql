{#- No two rows share the values of `columns` (optionally among rows matching `where`).
    Returns one row per duplicated key with its count. With the recent slice (see
    get_where_subquery), only keys present in recent rows are checked, against all rows, so a
    new row duplicating an old one is caught. Quality dimension: uniqueness. -#}
{% test unique_combination(model, columns, where=none) %}
{%- set slice = recent_slice_condition() -%}
{%- set key = columns | join(', ') -%}
{%- if slice %}
with recent_keys as (
    select distinct {{ key }}
    from {{ model }}
    where {{ slice }} {% if where %}and ({{ where }}){% endif %}
)
{% endif %}
select
    {{ key }},
    count(*) as duplicates
from {{ model }}
where
    true
    {% if where %}and ({{ where }}){% endif %}
    {% if slice %}and ({{ key }}) in (select {{ key }} from recent_keys){% endif %}
group by {{ key }}
having count(*) > 1
{% endtest %}
