"""Every DAG file imports, is not skipped by Airflow's safe-mode check, and reaches the running
dag-processor; the dbt DAGs have one task per model their selector picks, with dbt's edges."""

from __future__ import annotations

import json
import pkgutil
import subprocess

import pytest

from common.settings import PROJECT_ROOT
from dbt_project.runner import run_dbt

pytestmark = pytest.mark.slow

PROJECT_DAG_FILES = sorted(p.name for p in (PROJECT_ROOT / "dags").glob("*.py"))
PROJECT_DAG_IDS = {"dbt_daily", "dbt_intraday", "market_ingest", "stream_supervisor"}


@pytest.fixture(scope="module")
def dagbag(airflow_instance) -> dict:
    """What Airflow's DagBag (safe mode) loads from dags/, as JSON from a subprocess."""
    instance = airflow_instance
    proc = subprocess.run(
        [
            str(PROJECT_ROOT / ".state/venv/bin/python"),
            str(PROJECT_ROOT / "tests/orchestration/dagbag_report.py"),
            str(PROJECT_ROOT / "dags"),
        ],
        env=instance.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_dag_file_imports_without_error_and_safe_mode_skips_none(dagbag):
    report = dagbag
    assert report["import_errors"] == {}
    files = {PROJECT_ROOT.joinpath("dags", f).name for f in PROJECT_DAG_FILES}
    loaded_from = {dag["fileloc"].rsplit("/", 1)[-1] for dag in report["dags"].values()}
    assert files <= loaded_from, f"skipped or empty DAG files: {sorted(files - loaded_from)}"
    assert set(report["dags"]) == PROJECT_DAG_IDS


def test_the_running_dag_processor_parsed_every_dag_file_without_import_errors(airflow_instance):
    def parsed() -> set[str]:
        rows = airflow_instance.metadata("select dag_id from dag where not is_stale")
        return {r[0] for r in rows}

    seen = airflow_instance.wait_for(lambda: parsed() >= PROJECT_DAG_IDS and parsed(), 120)
    assert seen >= PROJECT_DAG_IDS
    errors = airflow_instance.metadata("select filename, stacktrace from import_error")
    assert errors == []


def _selected(selector: str, resource_type: str, instance) -> set[str]:
    result = run_dbt(
        ["ls", "--selector", selector, "--resource-type", resource_type, "--output", "name", "--quiet"],
        pg=instance.pg,
        target_path=instance.settings.home / "dbt-ls-target",
    )
    assert result.ok, result.stdout + result.stderr
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


def _dbt_graph(models: set[str], tests: set[str], instance) -> tuple[set, dict[str, set[str]]]:
    """dbt's edges between the selected models, and the selected tests on more than one node
    (Cosmos runs those as tasks of their own) with the selected models they depend on."""
    manifest = json.loads((instance.airflow.dbt_target / "manifest.json").read_text())
    nodes = manifest["nodes"]
    name = {uid: n["name"] for uid, n in nodes.items()}
    edges, multi_parent = set(), {}
    for node in nodes.values():
        parents = node["depends_on"].get("nodes", [])
        if node["resource_type"] == "model" and node["name"] in models:
            edges |= {(name[p], node["name"]) for p in parents if name.get(p) in models}
        elif node["resource_type"] == "test" and node["name"] in tests and len(parents) > 1:
            multi_parent[node["name"]] = {name[p] for p in parents if name.get(p) in models}
    return edges, multi_parent


def _node_of(task_id: str) -> str:
    """Cosmos's ids in the 'dbt' group: dbt.<model>_model_build, dbt.<test>_test (detached tests)."""
    assert task_id.startswith("dbt."), task_id
    return task_id.removeprefix("dbt.").removesuffix("_model_build").removesuffix("_test")


@pytest.mark.parametrize(("dag_id", "selector"), [("dbt_daily", "daily"), ("dbt_intraday", "intraday")])
def test_one_task_per_selected_model_and_the_same_edges_as_the_dbt_graph(
    airflow_instance, dagbag, dag_id, selector
):
    models = _selected(selector, "model", airflow_instance)
    assert len(models) >= 3, models
    edges, multi_parent = _dbt_graph(models, _selected(selector, "test", airflow_instance), airflow_instance)
    tasks = dagbag["dags"][dag_id]["tasks"]
    model_tasks = {t: ups for t, ups in tasks.items() if t.endswith("_model_build")}
    test_tasks = {t: ups for t, ups in tasks.items() if t.startswith("dbt.") and t.endswith("_test")}
    assert set(tasks) == {*model_tasks, *test_tasks, "quality_gate"}, "only model, test and gate tasks"
    assert sorted(_node_of(t) for t in model_tasks) == sorted(models), "one task per model, no other"
    assert {(_node_of(up), _node_of(t)) for t, ups in model_tasks.items() for up in ups} == edges
    # a test on two models runs once, after both (not inside either model's build)
    assert {_node_of(t): {_node_of(u) for u in ups} for t, ups in test_tasks.items()} == multi_parent
    # the gate comes after every dbt task
    dbt_tasks = {**model_tasks, **test_tasks}
    leaves = set(dbt_tasks) - {up for ups in dbt_tasks.values() for up in ups}
    assert set(tasks["quality_gate"]) == leaves


def test_the_dags_with_a_time_promise_carry_a_deadline_alert(dagbag):
    dags = dagbag["dags"]
    assert dags["dbt_daily"]["has_deadline"] and dags["dbt_intraday"]["has_deadline"]


def test_dbt_does_not_import_the_dag_files_as_plugins():
    """dbt's plugin manager imports every top-level module whose name starts with its prefix (dbt_) on
    sys.path, and Airflow puts dags/ on it: DAG files named so were executed again, Cosmos rendering
    included, inside every dbt task (about 0.2 s each)."""
    from dbt.plugins.manager import PluginManager

    folders = [str(PROJECT_ROOT / "dags"), str(PROJECT_ROOT / "tests/orchestration/dags")]
    picked = [
        name
        for _, name, _ in pkgutil.iter_modules(folders)
        if name.startswith(PluginManager.PLUGIN_MODULE_PREFIX)
    ]
    assert not picked, f"dbt would import these DAG files in every dbt task: {picked}"
