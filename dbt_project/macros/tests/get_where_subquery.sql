{#- Data tests on models read the recent slice: a test whose `where` config is 'recent_slice'
    (set for the staging, intermediate and marts folders in dbt_project.yml) sees only the rows
    written within var('dq_test_window') (by dbt_updated_at); var dq_test_window = 'all' tests every
    row. Any other `where` works as in dbt. -#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where == 'recent_slice' -%}
        {%- if var('dq_test_window') == 'all' -%}
            {%- do return(relation) -%}
        {%- endif -%}
        {%- set where = "dbt_updated_at >= now() - interval '" ~ var('dq_test_window') ~ "'" -%}
    {%- endif -%}
    {%- if where -%}
        {%- do return("(select * from " ~ relation ~ " where " ~ where ~ ") dbt_subquery") -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
