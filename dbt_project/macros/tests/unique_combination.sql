{#- No two rows share the values of `columns` (optionally among rows matching `where`).
    Returns one row per duplicated key with its count. With the recent slice (see
    get_where_subquery), only keys that have a recent row are reported, counted over all rows, so a
    new row duplicating an old one is caught. One pass: a single grouping of the whole relation.
    Quality dimension: uniqueness. -#}
{% test unique_combination(model, columns, where=none) %}
{%- set slice = recent_slice_condition() -%}
{%- set key = columns | join(', ') -%}
select
    {{ key }},
    count(*) as duplicates
from {{ model }}
{% if where %}where {{ where }}{% endif %}
group by {{ key }}
having count(*) > 1 {% if slice %}and bool_or({{ slice }}){% endif %}
{% endtest %}
