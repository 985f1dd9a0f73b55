{#- No two rows share the values of `columns` (optionally among rows matching `where`).
    Returns one row per duplicated key with its count. With the recent slice (see
    get_where_subquery), only keys that have a recent row are reported, counted over all rows, so a
    new row duplicating an old one is caught. A slice since the test's last pass is small: its keys
    are looked up in the whole relation (an index on the key makes that a few probes instead of a
    scan; rows with a null in the key are not looked up, not_null tests cover them). A test that never
    passed (the first build: its slice is everything) groups the whole relation in one pass instead.
    Quality dimension: uniqueness. -#}
{% test unique_combination(model, columns, where=none) %}
{%- set slice = recent_slice_condition() -%}
{%- set lookup = slice and recent_slice_is_since_pass() -%}
{%- set key = columns | join(', ') -%}
select
    {{ key }},
    count(*) as duplicates
from {{ model }}
where
    true
    {% if where %}and ({{ where }}){% endif %}
    {% if lookup -%}
    and ({{ key }}) in (
        select {{ key }} from {{ model }}
        where {{ slice }}{% if where %} and ({{ where }}){% endif %}
    )
    {%- endif %}
group by {{ key }}
having count(*) > 1 {% if slice and not lookup %}and bool_or({{ slice }}){% endif %}
{% endtest %}
