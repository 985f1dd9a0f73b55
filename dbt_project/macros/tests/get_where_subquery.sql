{#- Data tests on models read the recent slice: a test whose `where` config is 'recent_slice'
    (set for the staging, intermediate and marts folders in dbt_project.yml) sees only the rows
    written since it last passed (recent_slice_condition); var dq_test_window = 'all' tests every
    row. Tests that compare rows with other rows (SLICE_AWARE_TESTS) get the whole relation and use
    recent_slice_condition() themselves: they check the keys or series touched by recent rows
    against all rows. 'stream_landed_within <interval>' (the rt sources' tests) keeps the rows of
    rt.bars_1m / rt.indicators_1m that the bars the stream wrote within that interval can be: by
    bar_start, from the sink's ledger (stream_bar_bound), as those tables keep no index on their
    landing time (V024). Any other `where` works as in dbt. -#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') or '' -%}
    {%- set test_name = (model.get('test_metadata', {}) or {}).get('name', '') -%}
    {%- if where == 'recent_slice' -%}
        {%- if var('dq_test_window') == 'all' or test_name in slice_aware_tests() -%}
            {%- do return(relation) -%}
        {%- endif -%}
        {%- set where = recent_slice_condition() -%}
    {%- elif where.startswith('stream_landed_within ') -%}
        {%- set age = where[('stream_landed_within ' | length):] -%}
        {%- set where = "bar_start >= " ~ stream_bar_bound("now() - interval '" ~ age ~ "'") -%}
    {%- endif -%}
    {%- if where -%}
        {%- do return("(select * from " ~ relation ~ " where " ~ where ~ ") dbt_subquery") -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}


{% macro slice_aware_tests() -%}
    {{ return(['unique_combination', 'no_missing_trading_days']) }}
{%- endmacro %}


{#- The recent-slice condition for the current test, or '' when it tests every row: the rows written
    since this test last passed (its query's start, less var('staging_lookback'); a pass vouches for
    every row written before it), or, for a test that never passed, within var('dq_test_window').
    A failed or warned run does not move the start, so what it found is looked at again. The start is
    read when the test is compiled (just before it runs) and written as a literal, so the planner
    estimates the slice from the dbt_updated_at index and looks its keys up instead of scanning. -#}
{% macro recent_slice_condition() -%}
    {%- if config.get('where', '') == 'recent_slice' and var('dq_test_window') != 'all' -%}
        {%- set since = last_pass_started_at(model.unique_id) -%}
        {%- if since -%}
            {{ return("dbt_updated_at >= to_timestamp(" ~ since ~ ") - interval '" ~ var('staging_lookback') ~ "'") }}
        {%- endif -%}
        {{ return("dbt_updated_at >= now() - interval '" ~ var('dq_test_window') ~ "'") }}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}


{#- When the last passing run of test `unique_id` began its query (quality.test_results, epoch
    seconds), or none: never passed, no table yet, or not executing (parse). -#}
{% macro last_pass_started_at(unique_id) -%}
    {%- if not execute -%}{{ return(none) }}{%- endif -%}
    {%- set exists = run_query("select to_regclass('quality.test_results') is not null") -%}
    {%- if not exists.columns[0].values()[0] -%}{{ return(none) }}{%- endif -%}
    {%- set found = run_query(
        "select extract(epoch from max(test_started_at))::text"
        ~ " from quality.test_results where unique_id = '" ~ unique_id ~ "' and status = 'pass'") -%}
    {{ return(found.columns[0].values()[0]) }}
{%- endmacro %}


{#- Whether the current test's recent slice starts at its last pass (small) rather than the window. -#}
{% macro recent_slice_is_since_pass() -%}
    {{ return(last_pass_started_at(model.unique_id) is not none) }}
{%- endmacro %}
