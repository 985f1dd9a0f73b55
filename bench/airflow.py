"""Airflow: a dbt_daily DAG run through the scheduler against the plain daily run, parse time, memory.

In a private Airflow (home .state/airflow-bench, metadata database airflow_bench, free ports, its own
statsd_exporter) over a pipeline database of its own (market_airflow_bench: SYMBOLS x DAYS of daily
bars, built once by a full daily run first):

  plain_daily_s         `python -m dbt_project build --skip-unit-tests --selector daily` after one new
                        trading day, a new process (the baseline), median of REPEATS
  dag_run_s             a dbt_daily run triggered through the scheduler after one new trading day, from
                        queued to the end of its last task (the quality gate), median of REPEATS
  ratio                 dag_run_s / plain_daily_s (goal: under 2)
  breakdown             of the median DAG run: per task queued->start (executor pick-up and fork),
                        start->dbt (task process start, DAG re-parse, Cosmos' project copy: from the task
                        log), dbt (the dbtRunner invocation), and the scheduling gaps on the critical
                        path (a task's queue time minus its last upstream's end)
  parse_s               per DAG file, the dag-processor's own last parse duration (its stats table
                        in the log) (goal: under 1 s)
  idle_pss_mib          proportional memory of the Airflow processes and their children, idle
                        (goal: under 600 MiB together)
"""

from __future__ import annotations

import json
import logging
import re
import statistics
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from common.db import connect, fetch_all
from common.migrate import drop_database, recreate_database
from common.settings import PROJECT_ROOT, postgres_settings, stack_settings
from dbt_project import sample_data
from dbt_project.runner import run_dbt
from devstack import airflow as af
from devstack.process import tree_pss
from devstack.statsd import StatsdExporter
from orchestration.settings import AirflowSettings
from tests.conftest import free_ports

log = logging.getLogger(__name__)

PIPELINE = "market_airflow_bench"
METADATA = "airflow_bench"
REPEATS = 3


def _metadata(instance: af.Airflow, statement: str, params: tuple = ()) -> list[tuple]:
    return fetch_all(statement, params, settings=instance.pg, database=instance.settings.database)


def _plain_daily(pg_database: str, target: Path) -> float:
    cmd = [sys.executable, "-m", "dbt_project", "build", "--skip-unit-tests", "--selector", "daily"]
    cmd += ["--database", pg_database, "--target-path", str(target)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"plain daily run failed: {(proc.stdout + proc.stderr)[-3000:]}")
    return seconds


def _trigger_and_wait(instance: af.Airflow, timeout_s: float = 900) -> str:
    before = _metadata(instance, "select coalesce(max(id), 0) from dag_run where dag_id = 'dbt_daily'")[0][0]
    instance.airflow_cli("dags", "trigger", "dbt_daily")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = _metadata(
            instance,
            "select run_id, state from dag_run where dag_id = 'dbt_daily' and id > %s order by id limit 1",
            (before,),
        )
        if rows and rows[0][1] in ("success", "failed"):
            if rows[0][1] != "success":
                raise RuntimeError(f"dbt_daily run {rows[0][0]} failed")
            return rows[0][0]
        time.sleep(0.5)
    raise TimeoutError("dbt_daily did not finish")


_TS = re.compile(r'"timestamp":\s*"([^"]+)"')


def _log_marks(instance: af.Airflow, run_id: str, task_id: str) -> dict[str, datetime]:
    """Times from a task's log: its first line, Cosmos' dbtRunner call, the end of dbt."""
    folder = instance.settings.home / "logs" / "dag_id=dbt_daily" / f"run_id={run_id}" / f"task_id={task_id}"
    marks: dict[str, datetime] = {}
    for path in sorted(folder.glob("attempt=*.log")):
        for line in path.read_text(errors="replace").splitlines():
            m = _TS.search(line)
            if not m:
                continue
            ts = datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
            marks.setdefault("first", ts)
            if "Trying to run dbtRunner" in line:
                marks["dbt_start"] = ts
            marks["last"] = ts
    return marks


def _breakdown(instance: af.Airflow, run_id: str) -> dict:
    rows = _metadata(
        instance,
        "select ti.task_id, ti.queued_dttm, ti.start_date, ti.end_date, r.queued_at, r.start_date"
        " from task_instance ti join dag_run r on r.dag_id = ti.dag_id and r.run_id = ti.run_id"
        " where ti.dag_id = 'dbt_daily' and ti.run_id = %s",
        (run_id,),
    )
    tasks = {}
    for task_id, queued, start, end, run_queued, _run_start in rows:
        marks = _log_marks(instance, run_id, task_id)
        dbt_start = marks.get("dbt_start")
        tasks[task_id] = {
            "queue_to_start_s": (start - queued).total_seconds(),
            "start_to_dbt_s": (dbt_start - start).total_seconds() if dbt_start else None,
            "dbt_s": (end - dbt_start).total_seconds() if dbt_start else None,
            "run_s": (end - start).total_seconds(),
            "queued": queued,
            "end": end,
        }
        first_queued = run_queued
    run_end = max(t["end"] for t in tasks.values())
    total = (run_end - first_queued).total_seconds()

    def mean(key: str) -> float:
        values = [t[key] for t in tasks.values() if t[key] is not None]
        return round(statistics.mean(values), 2) if values else 0.0

    return {
        "tasks": len(tasks),
        "run_queued_to_end_s": round(total, 2),
        "mean_queue_to_start_s": mean("queue_to_start_s"),
        "mean_start_to_dbt_s": mean("start_to_dbt_s"),
        "mean_dbt_s": mean("dbt_s"),
        "sum_task_run_s": round(sum(t["run_s"] for t in tasks.values()), 2),
        "per_task": {
            k: {kk: round(vv, 2) for kk, vv in v.items() if isinstance(vv, float)} for k, v in tasks.items()
        },
    }


def _parse_times(instance: af.Airflow) -> dict[str, float]:
    """Each DAG file's last parse duration as the dag-processor reports it (its "DAG File Processing
    Stats" table, LAST RUNTIME). Its StatsD timer dag_processing.last_duration arrives in seconds
    where statsd_exporter expects milliseconds, so the exporter's figure is off by 1000."""
    log_file = instance.components()["dag-processor"].log_file
    times: dict[str, float] = {}
    for line in log_file.read_text(errors="replace").splitlines():
        m = re.match(r"^\S+\s+(\S+\.py)\s+.*\s(\d+\.\d+)s\s+\S+$", line)
        if m:
            times[m.group(1).removesuffix(".py")] = float(m.group(2))
    return times


def run(quick: bool = False) -> dict:
    symbols, days_n = (20, 252) if quick else (100, 756)
    repeats = 1 if quick else REPEATS
    home = stack_settings().state_dir / "airflow-bench"
    api, statsd, exporter_port = free_ports(3)
    pg = recreate_database(PIPELINE)
    drop_database(postgres_settings().model_copy(update={"database": METADATA}))
    settings = AirflowSettings(
        home=home,
        api_port=api,
        database=METADATA,
        db_user="airflow_bench",
        statsd_port=statsd,
        statsd_exporter_port=exporter_port,
        dbt_retries=0,
    )
    instance = af.Airflow(settings, pg)
    # a fresh home: migrations and the manifest are made again for this database
    for stale in (home / ".migrated",):
        stale.unlink(missing_ok=True)
    exporter = StatsdExporter(settings, home)
    target = home / "plain-target"

    added = 2 * repeats + 1
    days = sample_data.trading_days(date.today() - timedelta(days=1), days_n + added)
    history, new_days = days[:-added], iter(days[-added:])
    writer = connect("writer", pg)
    sample_data.load_daily_bars(
        writer, [sample_data.daily_series(f"A{i:03d}", history, seed=i) for i in range(symbols)]
    )

    def add_day() -> None:
        day = next(new_days)
        extra = [
            sample_data.daily_series(f"A{i:03d}", [day], seed=day.toordinal() + i) for i in range(symbols)
        ]
        sample_data.load_daily_bars(writer, extra)

    figures: dict[str, object] = {"symbols": symbols, "days": days_n}
    exporter.start()
    try:
        started = time.perf_counter()
        af.start(instance, timeout_s=300)
        figures["airflow_start_s"] = round(time.perf_counter() - started, 1)
        run_dbt(["seed"], pg=pg, target_path=target)  # reference data the daily tests read
        _plain_daily(PIPELINE, target)  # the first build of the marts; then one new day per run
        deadline = time.monotonic() + 180
        while not _metadata(instance, "select 1 from dag where dag_id = 'dbt_daily' and not is_stale"):
            if time.monotonic() > deadline:
                raise TimeoutError("the dag-processor did not parse dbt_daily within 180 s")
            time.sleep(1)
        af.unpause(instance, ["dbt_daily"])
        # a first DAG run warms the workers' caches (Cosmos' partial-parse cache) as a running
        # deployment has them; not counted
        add_day()
        _trigger_and_wait(instance)
        plain, dag_runs, breakdowns = [], [], []
        for _ in range(repeats):
            add_day()
            plain.append(_plain_daily(PIPELINE, target))
            add_day()
            run_id = _trigger_and_wait(instance)
            b = _breakdown(instance, run_id)
            dag_runs.append(b["run_queued_to_end_s"])
            breakdowns.append(b)
        median_plain = statistics.median(plain)
        median_dag = statistics.median(dag_runs)
        figures.update(
            {
                "plain_daily_s": round(median_plain, 2),
                "plain_daily_runs_s": [round(x, 2) for x in plain],
                "dag_run_s": round(median_dag, 2),
                "dag_runs_s": dag_runs,
                "ratio": round(median_dag / median_plain, 2),
                "ratio_goal": 2.0,
                "breakdown": breakdowns[dag_runs.index(median_dag)]
                if median_dag in dag_runs
                else breakdowns[0],
            }
        )
        instance.airflow_cli("dags", "pause", "dbt_daily")
        # idle: nothing running; the dag-processor has parsed every file a few times by now
        time.sleep(15)
        figures["parse_s"] = _parse_times(instance)
        peak: dict[str, int] = {}
        for _ in range(5):
            for name, comp in instance.components().items():
                pid = comp.pid()
                if pid:
                    peak[name] = max(peak.get(name, 0), tree_pss(pid))
            time.sleep(1)
        mib = {name: round(size / 2**20, 1) for name, size in peak.items()}
        figures["idle_pss_mib"] = mib
        figures["idle_pss_total_mib"] = round(sum(mib.values()), 1)
        figures["idle_pss_goal_mib"] = 600
    finally:
        writer.close()
        for comp in instance.components().values():
            comp.stop()
        exporter.stop()
    (home / "figures.json").write_text(json.dumps(figures, indent=1, default=str))
    return figures
