"""Run in a subprocess with the private Airflow's environment: load a DAG folder as Airflow's DagBag
does (safe mode on) and print, as JSON, the import errors and every DAG's tasks, upstream ids and
the file it came from."""

import json
import sys

from airflow.dag_processing.dagbag import DagBag

folder = sys.argv[1]
bag = DagBag(dag_folder=folder, safe_mode=True)
report = {
    "import_errors": {str(k): str(v)[-2000:] for k, v in bag.import_errors.items()},
    "dags": {
        dag_id: {
            "fileloc": dag.fileloc,
            "tasks": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
            "operators": {t.task_id: type(t).__name__ for t in dag.tasks},
            "has_deadline": bool(getattr(dag, "deadline", None)),
        }
        for dag_id, dag in bag.dags.items()
    },
}
print(json.dumps(report))
