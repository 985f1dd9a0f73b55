{#- dbt's is_incremental() only knows the built-in "incremental" materialization; this project's
    partitioned_table is incremental too. A root-project macro overrides the global one. -#}
{% macro is_incremental() %}
    {% if not execute %}
        {{ return(false) }}
    {% else %}
        {% set relation = adapter.get_relation(this.database, this.schema, this.table) %}
        {{ return(relation is not none
                  and relation.type == 'table'
                  and model.config.materialized in ('incremental', 'partitioned_table')
                  and not should_full_refresh()) }}
    {% endif %}
{% endmacro %}
