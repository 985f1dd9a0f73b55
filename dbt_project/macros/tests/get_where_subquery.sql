{#- Data tests on models read the recent slice: a test whose `where` config is 'recent_slice'
    (set for the staging, intermediate and marts folders in dbt_project.yml) sees only the rows
    written within var('dq_test_window') (by dbt_updated_at); var dq_test_window = 'all' tests every
    row. Tests that compare rows with other rows (SLICE_AWARE_TESTS) get the whole relation and use
    recent_slice_condition() themselves: they check the keys or series touched by recent rows
    against all rows. Any other `where` works as in dbt. -#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set test_name = (model.get('test_metadata', {}) or {}).get('name', '') -%}
    {%- if where == 'recent_slice' -%}
        {%- if var('dq_test_window') == 'all' or test_name in slice_aware_tests() -%}
            {%- do return(relation) -%}
        {%- endif -%}
        {%- set where = recent_slice_condition() -%}
    {%- endif -%}
    {%- if where -%}
        {%- do return("(select * from " ~ relation ~ " where " ~ where ~ ") dbt_subquery") -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}


{% macro slice_aware_tests() -%}
    {{ return(['unique_combination', 'no_missing_trading_days']) }}
{%- endmacro %}


{#- The recent-slice condition for the current test, or '' when it tests every row. -#}
{% macro recent_slice_condition() -%}
    {%- if config.get('where', '') == 'recent_slice' and var('dq_test_window') != 'all' -%}
        {{ return("dbt_updated_at >= now() - interval '" ~ var('dq_test_window') ~ "'") }}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}
