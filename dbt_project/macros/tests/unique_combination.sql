{#- No two rows share the values of `columns`, among the rows matching `row_filter` (a condition,
    optional). Returns one row per duplicated key with its count. With the recent slice (see
    get_where_subquery), only keys that have a recent row are reported, counted over all rows, so a
    new row duplicating an old one is caught. A slice since the test's last pass is small: its keys
    are looked up in the whole relation (an index on the key makes that a few probes instead of a
    scan; rows with a null in the key are not looked up, not_null tests cover them). A test that never
    passed (the first build: its slice is everything) groups the whole relation in one pass instead.
    `bound_by` ({column: ..., within: '<interval>'}) states that two rows with the same key lie within
    that interval of each other in `column` (a partition key whose key columns do not contain it):
    the lookup is then bounded to the slice's span of `column` widened by it, so that a partitioned
    relation is pruned to the partitions that can hold a duplicate instead of probing all of them.
    (A dbt `where` given to the test is a config and replaces the recent slice: use `row_filter`.)
    Quality dimension: uniqueness. -#}
{% test unique_combination(model, columns, row_filter=none, bound_by=none) %}
{%- set slice = recent_slice_condition() -%}
{%- set lookup = slice and recent_slice_is_since_pass() -%}
{%- set key = columns | join(', ') -%}
{%- if lookup %}
with recent_keys as materialized (
    select
        {{ key }}{% if bound_by %},
        {{ bound_by['column'] }} as bound{% endif %}
    from {{ model }}
    where
        {{ slice }}
        {% if row_filter %}and ({{ row_filter }}){% endif %}
)

select
    {{ key }},
    count(*) as duplicates
from {{ model }}
where
    ({{ key }}) in (select {{ key }} from recent_keys)
    {% if row_filter %}and ({{ row_filter }}){% endif %}
    {% if bound_by -%}
    and {{ bound_by['column'] }} > (select min(bound) from recent_keys) - interval '{{ bound_by['within'] }}'
    and {{ bound_by['column'] }} < (select max(bound) from recent_keys) + interval '{{ bound_by['within'] }}'
    {%- endif %}
group by {{ key }}
having count(*) > 1
{%- else %}
select
    {{ key }},
    count(*) as duplicates
from {{ model }}
{% if row_filter %}where {{ row_filter }}{% endif %}
group by {{ key }}
having count(*) > 1 {% if slice %}and bool_or({{ slice }}){% endif %}
{%- endif %}
{% endtest %}
