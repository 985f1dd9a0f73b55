"""The dbt DAGs (dbt_daily, dbt_intraday): Cosmos renders one task per model of a selector of
dbt_project/selectors.yml, each running `dbt build --select <model>` (the model and its data tests)
in the worker's own interpreter (InvocationMode.DBT_RUNNER), then the quality gate scores the run.

- Graph: read from the manifest devstack writes at start (`dbt parse` into <AF_HOME>/dbt-target,
  LoadMode.DBT_MANIFEST, a fraction of a second per parse). selectors.yml names models by their full
  fqn: Cosmos compares `fqn:` values with the full name, and a bare name renders an empty DAG with no
  import error (tests/orchestration/test_dags.py fails on that).
- Connection: dbt_project/profiles.yml, whose env_var()s the Airflow processes carry (devstack puts
  the project's PG_* settings in their environment: no secret in the serialized DAG).
- Unit tests are excluded (DBT_EXCLUDE_RESOURCE_TYPES, and from the rendered graph); source nodes
  are not rendered.
- Every dbt invocation of a run writes DBT_ENV_CUSTOM_ENV_ORCHESTRATOR_RUN='<dag_id>/<run_id>' into
  quality.* (see the record_quality macro); the gate scores the run from those rows.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG, get_current_context, task
from cosmos import (
    DbtTaskGroup,
    ExecutionConfig,
    InvocationMode,
    LoadMode,
    ProfileConfig,
    ProjectConfig,
    RenderConfig,
    TestBehavior,
)

from dbt_project.runner import PROJECT_DIR
from orchestration.dag_defaults import START, default_args
from orchestration.settings import airflow_settings

DBT_GROUP = "dbt"


class EmptyDbtGraph(RuntimeError):
    """The selector picked nothing (Cosmos's empty-DAG trap): an import error instead of an empty DAG."""


def manifest_path() -> Path:
    """Where devstack (or a test) put the manifest the DAGs are rendered from."""
    default = airflow_settings().home / "dbt-target"
    return Path(os.environ.get("MP_AIRFLOW_DBT_TARGET", str(default))) / "manifest.json"


def dbt_task_group(selector: str, retries: int) -> DbtTaskGroup:
    """One Cosmos task per model the selector picks (with the model's tests), edges from dbt's graph."""
    return DbtTaskGroup(
        group_id=DBT_GROUP,
        project_config=ProjectConfig(
            dbt_project_path=PROJECT_DIR,
            manifest_path=manifest_path(),
            project_name="marketpipe",
            partial_parse=True,
        ),
        profile_config=ProfileConfig(
            profile_name="marketpipe", target_name="dev", profiles_yml_filepath=PROJECT_DIR / "profiles.yml"
        ),
        execution_config=ExecutionConfig(invocation_mode=InvocationMode.DBT_RUNNER),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            selector=selector,
            exclude=["resource_type:unit_test"],
            test_behavior=TestBehavior.BUILD,
            emit_datasets=False,
            enable_mock_profile=False,
            # a test on two models (relationships) runs as its own task after both, not inside one
            # model's build, where the other model may not exist yet
            should_detach_multiple_parents_tests=True,
        ),
        operator_args={
            "install_deps": False,
            "append_env": True,
            "env": {
                "DBT_ENV_CUSTOM_ENV_ORCHESTRATOR_RUN": "{{ dag.dag_id }}/{{ run_id }}",
                "DBT_EXCLUDE_RESOURCE_TYPES": "unit_test",
            },
        },
        default_args=default_args(retries),
    )


@task(trigger_rule="all_done", retries=0, on_failure_callback=None)
def quality_gate() -> dict:
    """Score the whole DAG run from its dbt test results (docs/DBT.md); fail below the threshold or when
    a dbt task failed (the gate runs after all of them, whatever their state)."""
    from orchestration.quality_gate import gate

    context = get_current_context()
    ti, dag_run = context["ti"], context["dag_run"]
    states = ti.get_task_states(dag_id=ti.dag_id, task_group_id=DBT_GROUP, run_ids=[dag_run.run_id])
    failed = sorted(
        t for t, st in states.get(dag_run.run_id, {}).items() if st in ("failed", "upstream_failed")
    )
    return gate(ti.dag_id, dag_run.run_id, ti.task_id, failed_tasks=failed)


def dbt_dag(dag_id: str, selector: str, schedule, description: str, deadline=None, **dag_kwargs) -> DAG:
    """A dbt DAG: the selector's models as Cosmos tasks, then the quality gate."""
    s = airflow_settings()
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        deadline=deadline,
        default_args=default_args(0),
        tags=["dbt", "marketpipe"],
        **dag_kwargs,
    ) as dag:
        group = dbt_task_group(selector, retries=s.dbt_retries)
        if not group.children:
            raise EmptyDbtGraph(
                f"Cosmos rendered no task for selector {selector!r} from {manifest_path()}: selectors.yml "
                "must name models by their full fqn (marketpipe.marts.<model>), and the manifest must be "
                "current (`make airflow` runs dbt parse)"
            )
        group >> quality_gate()
    return dag
