"""Imported by Airflow's `airflow_local_settings` (written by devstack into <AF_HOME>/config/) in every
Airflow process. In the scheduler only, before the LocalExecutor forks its workers:

- it imports dbt, its PostgreSQL adapter, Cosmos and the dbt DAG factory: each task process is forked
  from a worker and starts with them imported, instead of paying dbt's imports (2-3 s) per dbt task;
- unless AF_DBT_LINEAGE, Cosmos skips computing OpenLineage events after each dbt call (no lineage
  backend here; about 0.2 s a task);
- with AF_PRELOAD_MANIFEST, it parses the dbt project once and hands the manifest to the dbtRunner
  Cosmos uses (dbtRunner(manifest=...), dbt's documented way to reuse a parse): a task's dbt call then
  skips reading the partial-parse file and writing manifest.json (about 1.2 s of each dbt task here).
  The manifest is the project as it was when the scheduler started: restart Airflow after changing
  the dbt project (`make down`, `make airflow`; devstack re-parses the project for Cosmos then too).

The other processes (api-server, dag-processor, triggerer, CLI) stay lean.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)


def preload_for_workers(argv: list[str] | None = None) -> bool:
    argv = sys.argv if argv is None else argv
    if argv[1:2] != ["scheduler"]:
        return False
    started = time.perf_counter()
    import cosmos.operators.local  # noqa: F401
    import dbt.adapters.postgres
    import dbt.cli.main
    import dbt.task.build  # noqa: F401

    import orchestration.dbt_dags  # noqa: F401
    from orchestration.settings import airflow_settings

    settings = airflow_settings()
    if settings.preload_manifest:
        _share_parsed_manifest()
    if not settings.dbt_lineage:
        _skip_openlineage_events()
    log.info("event=preloaded_dbt seconds=%.2f", time.perf_counter() - started)
    return True


def _skip_openlineage_events() -> None:
    """Cosmos computes OpenLineage events after each dbt call unless its processor is unavailable
    (`_get_dbt_local_artifact_processor` returns None, its documented "not installed" path): take that
    path, since no OpenLineage backend is configured here."""
    from cosmos.operators.local import DbtLocalBaseOperator

    DbtLocalBaseOperator._get_dbt_local_artifact_processor = staticmethod(lambda: None)


def _share_parsed_manifest() -> None:
    """Parse the project once (dbt parse, in this process) and make Cosmos's cached dbtRunner carry it."""
    import tempfile

    import cosmos.dbt.runner as cosmos_runner
    from dbt.cli.main import dbtRunner

    from dbt_project.runner import PROJECT_DIR

    target = tempfile.mkdtemp(prefix="dbt-preload-")
    args = ["parse", "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    result = dbtRunner().invoke([*args, "--target-path", target, "--log-path", target, "--quiet"])
    if not result.success or result.result is None:
        log.warning("event=preload_manifest_failed error=%s", result.exception)
        return
    # dbt caches the DBT_ENV_CUSTOM_ENV_* variables on first use, process-wide: forget this process's,
    # so each task's dbt call reads its own (the run key the quality hook records)
    from dbt_common.events.functions import reset_metadata_vars

    reset_metadata_vars()
    runner = dbtRunner(manifest=result.result)
    cosmos_runner._get_cached_dbt_runner = lambda: runner
