"""Imported by Airflow's `airflow_local_settings` (written by devstack into <AF_HOME>/config/) in every
Airflow process. In the scheduler only, it imports dbt, its PostgreSQL adapter, Cosmos and the dbt DAG
factory before the LocalExecutor forks its workers: each task process is forked from a worker and so
starts with them imported, instead of paying dbt's imports (2-3 s) in every dbt task. The other
processes (api-server, dag-processor, triggerer, CLI) stay lean.
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

    log.info("event=preloaded_dbt seconds=%.2f", time.perf_counter() - started)
    return True
