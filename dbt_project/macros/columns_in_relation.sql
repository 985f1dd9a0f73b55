{#-
  dbt-postgres' own get_columns_in_relation, with one change: an array column reports its real type
  (udt_name '_float8' -> 'double precision[]') instead of information_schema's bare 'ARRAY', which
  unit-test fixtures would render as `cast(null as ARRAY)`, a syntax error. This lets
  int_daily_indicators_computed keep ta_state as float8[] instead of text (its text form cost 2.3 s
  per 1.26M rows on every full build).
-#}
{% macro postgres__get_columns_in_relation(relation) -%}
    {% call statement('get_columns_in_relation', fetch_result=True) %}
        select
            column_name,
            case when data_type = 'ARRAY' then udt_name::regtype::text else data_type end as data_type,
            character_maximum_length,
            numeric_precision,
            numeric_scale
        from {{ relation.information_schema('columns') }}
        where
            table_name = '{{ relation.identifier }}'
            {% if relation.schema %}
                and table_schema = '{{ relation.schema }}'
            {% endif %}
        order by ordinal_position
    {% endcall %}
    {% set table = load_result('get_columns_in_relation').table %}
    {{ return(sql_convert_columns_in_relation(table)) }}
{% endmacro %}
