{#- None of `columns` is null. One test and one scan for all of a model's required columns, instead
    of one dbt node and one scan per column: returns one row per column that has nulls, with their
    count. Reads the recent slice like every test declared next to a model (get_where_subquery).
    Quality dimension: completeness. -#}
{% test not_null_columns(model, columns) %}
with null_counts as (
    select
        {%- for column in columns %}
        count(*) filter (where {{ adapter.quote(column) }} is null) as {{ adapter.quote(column) }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ model }}
    where
        {%- for column in columns %}
        {{ "or " if not loop.first }}{{ adapter.quote(column) }} is null
        {%- endfor %}
)

select
    per_column.column_name,
    per_column.null_rows
from null_counts
cross join lateral (
    values
        {%- for column in columns %}
        ('{{ column }}', null_counts.{{ adapter.quote(column) }}){{ "," if not loop.last }}
        {%- endfor %}
) as per_column (column_name, null_rows)
where per_column.null_rows > 0
{% endtest %}
