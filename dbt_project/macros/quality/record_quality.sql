{#-
  on-run-end: one row per test result into quality.test_results and one row per invocation into
  quality.run_scores, for `dbt build`, `dbt test` and `dbt run`. Idempotent per invocation: both
  tables are keyed by invocation_id (and the test's unique_id), and the inserts skip what exists.

  Scoring (quality.run_scores), over the data tests of the invocation that ran (skipped ones,
  whose upstream failed, are left out; unit tests are counted apart and not scored):
    test points        pass = 100, warn = 50, fail or error = 0
    dimension score    average points of the tests of that dimension (null when it has none)
    score              sum(weight_d * dimension_score_d) / sum(weight_d) over dimensions with tests,
                       weights from var('quality_weights') (all 1 by default)
  A test's dimension is its config meta.dq_dimension when set, else given by its generic test
  (see quality_dimension()).

  orchestrator_run (both tables) is the environment variable DBT_ENV_CUSTOM_ENV_ORCHESTRATOR_RUN
  (dbt_metadata_envs: read at run time, so it never invalidates partial parsing): Airflow's dbt tasks
  set it to '<dag_id>/<run_id>', and the quality gate scores a whole DAG run from the rows of all of
  its dbt invocations (orchestration/quality_gate.py). Null outside Airflow.
-#}
{% macro record_quality(results) %}
    {%- if not execute or flags.WHICH not in ('build', 'test', 'run') -%}
        {{ return('select 1') }}
    {%- endif -%}
    {%- set rows = [] -%}
    {%- set orchestrator_run = quality_literal(dbt_metadata_envs.get('ORCHESTRATOR_RUN') or none) -%}
    {%- for result in results if result.node.resource_type in ('test', 'unit_test') -%}
        {%- set node = result.node -%}
        {%- set kind = 'unit' if node.resource_type == 'unit_test' else 'data' -%}
        {%- set test_type = node.test_metadata.name if (node.test_metadata is defined and node.test_metadata) else ('unit' if kind == 'unit' else 'singular') -%}
        {%- set attached = node.attached_node if (node.attached_node is defined and node.attached_node) else (node.model if kind == 'unit' else ((node.depends_on.nodes | default([]))[-1] if node.depends_on.nodes else none)) -%}
        {%- set column = node.column_name if (node.column_name is defined and node.column_name) else none -%}
        {%- set dimension = quality_dimension(node, test_type, kind) -%}
        {%- do rows.append("("
            ~ quality_literal(invocation_id) ~ ", "
            ~ quality_literal(node.unique_id) ~ ", "
            ~ quality_literal(node.name) ~ ", "
            ~ quality_literal(kind) ~ ", "
            ~ quality_literal(test_type) ~ ", "
            ~ quality_literal(dimension) ~ ", "
            ~ quality_literal(attached) ~ ", "
            ~ quality_literal(column) ~ ", "
            ~ quality_literal(result.status | string) ~ ", "
            ~ quality_literal(node.config.severity | lower) ~ ", "
            ~ (result.failures if result.failures is not none else 'null') ~ ", "
            ~ quality_literal(result.message) ~ ", "
            ~ (result.execution_time | round(3)) ~ ", "
            ~ quality_literal(run_started_at.isoformat()) ~ "::timestamptz, "
            ~ quality_literal(quality_test_started_at(result)) ~ "::timestamptz, "
            ~ orchestrator_run ~ ")") -%}
    {%- endfor -%}
    {%- set weights = var('quality_weights') -%}

    {{ create_quality_tables() }}

    {% if rows %}
    insert into quality.test_results (
        invocation_id, unique_id, test_name, test_kind, test_type, dimension, tested_node, column_name,
        status, severity, failures, message, execution_time_s, run_started_at, test_started_at,
        orchestrator_run
    ) values
    {{ rows | join(',\n    ') }}
    on conflict (invocation_id, unique_id) do nothing;
    {% endif %}

    insert into quality.run_scores (
        invocation_id, command, run_started_at, dbt_version,
        tests_run, tests_passed, tests_warned, tests_failed, tests_skipped, unit_tests_run, unit_tests_failed,
        score, completeness_score, uniqueness_score, validity_score, consistency_score, freshness_score,
        timeliness_score, orchestrator_run
    )
    with results as (
        select * from quality.test_results where invocation_id = {{ quality_literal(invocation_id) }}
    ),

    scored as (
        select
            dimension,
            case status when 'pass' then 100.0 when 'warn' then 50.0 else 0.0 end as points
        from results
        where test_kind = 'data' and status in ('pass', 'warn', 'fail', 'error')
    ),

    dimensions as (
        select
            dimension,
            avg(points) as score
        from scored
        group by dimension
    ),

    weights (dimension, weight) as (
        values
        {% for name, weight in weights.items() -%}
            ({{ quality_literal(name) }}, {{ weight }}::float8){{ "," if not loop.last }}
        {% endfor %}
    ),

    overall as (
        select sum(dimensions.score * weights.weight) / nullif(sum(weights.weight), 0) as score
        from dimensions
        inner join weights on dimensions.dimension = weights.dimension
    )

    select
        {{ quality_literal(invocation_id) }},
        {{ quality_literal(flags.WHICH) }},
        {{ quality_literal(run_started_at.isoformat()) }}::timestamptz,
        {{ quality_literal(dbt_version) }},
        (select count(*) from results where test_kind = 'data' and status <> 'skipped'),
        (select count(*) from results where test_kind = 'data' and status = 'pass'),
        (select count(*) from results where test_kind = 'data' and status = 'warn'),
        (select count(*) from results where test_kind = 'data' and status in ('fail', 'error')),
        (select count(*) from results where test_kind = 'data' and status = 'skipped'),
        (select count(*) from results where test_kind = 'unit' and status <> 'skipped'),
        (select count(*) from results where test_kind = 'unit' and status in ('fail', 'error')),
        (select score from overall),
        (select score from dimensions where dimension = 'completeness'),
        (select score from dimensions where dimension = 'uniqueness'),
        (select score from dimensions where dimension = 'validity'),
        (select score from dimensions where dimension = 'consistency'),
        (select score from dimensions where dimension = 'freshness'),
        (select score from dimensions where dimension = 'timeliness'),
        {{ orchestrator_run }}
    on conflict (invocation_id) do nothing;
{% endmacro %}


{#- The quality dimension of a test: meta.dq_dimension, else by its generic test name. -#}
{% macro quality_dimension(node, test_type, kind) %}
    {%- if kind == 'unit' -%}{{ return('logic') }}{%- endif -%}
    {%- set meta = node.config.meta if node.config.meta else {} -%}
    {%- if meta.get('dq_dimension') -%}{{ return(meta['dq_dimension']) }}{%- endif -%}
    {%- set by_test = {
        'not_null': 'completeness',
        'not_null_columns': 'completeness',
        'no_missing_trading_days': 'completeness',
        'unique': 'uniqueness',
        'unique_combination': 'uniqueness',
        'accepted_values': 'validity',
        'accepted_range': 'validity',
        'ohlc_consistent': 'consistency',
        'relationships': 'consistency',
        'recency_within': 'freshness',
        'landing_latency_within': 'timeliness',
    } -%}
    {{ return(by_test.get(test_type, 'validity')) }}
{% endmacro %}


{#- A SQL string literal (or null) for any value. -#}
{% macro quality_literal(value) -%}
    {%- if value is none -%}null{%- else -%}'{{ (value | string) | replace("'", "''") }}'{%- endif -%}
{%- endmacro %}


{#- The quality tables (also created by the on-run-start hook: the tests' recent slice reads
    quality.test_results). -#}
{% macro create_quality_tables() %}
    create schema if not exists quality;

    create table if not exists quality.test_results (
        invocation_id    text        not null,
        unique_id        text        not null,
        test_name        text        not null,
        test_kind        text        not null check (test_kind in ('data', 'unit')),
        test_type        text        not null,
        dimension        text,
        tested_node      text,
        column_name      text,
        status           text        not null,
        severity         text,
        failures         bigint,
        message          text,
        execution_time_s double precision,
        run_started_at   timestamptz not null,
        recorded_at      timestamptz not null default now(),
        primary key (invocation_id, unique_id)
    );

    create table if not exists quality.run_scores (
        invocation_id       text        primary key,
        command             text        not null,
        run_started_at      timestamptz not null,
        recorded_at         timestamptz not null default now(),
        dbt_version         text        not null,
        tests_run           integer     not null,
        tests_passed        integer     not null,
        tests_warned        integer     not null,
        tests_failed        integer     not null,
        tests_skipped       integer     not null,
        unit_tests_run      integer     not null,
        unit_tests_failed   integer     not null,
        score               double precision,
        completeness_score  double precision,
        uniqueness_score    double precision,
        validity_score      double precision,
        consistency_score   double precision,
        freshness_score     double precision,
        timeliness_score    double precision
    );

    -- when the test's query began: a passing data test vouches for every row written before it, so
    -- the next run's recent slice starts there (recent_slice_condition)
    alter table quality.test_results add column if not exists test_started_at timestamptz;
    create index if not exists test_results_unique_id_idx on quality.test_results (unique_id, test_started_at);
    create index if not exists test_results_run_started_at_idx on quality.test_results (run_started_at);
    create index if not exists run_scores_run_started_at_idx on quality.run_scores (run_started_at);
    -- the Airflow DAG run ('<dag_id>/<run_id>') an invocation belonged to: one score per DAG run
    alter table quality.test_results add column if not exists orchestrator_run text;
    alter table quality.run_scores add column if not exists orchestrator_run text;
    create index if not exists test_results_orchestrator_run_idx on quality.test_results (orchestrator_run)
        where orchestrator_run is not null;
{% endmacro %}


{#- When a result's query began (its 'execute' timing, UTC), or none when it did not run. -#}
{% macro quality_test_started_at(result) -%}
    {%- for timing in result.timing if timing.name == 'execute' and timing.started_at -%}
        {{ return(timing.started_at.isoformat() ~ ('' if timing.started_at.tzinfo else '+00:00')) }}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}
