"""The quality gate after a dbt DAG's tasks: one data-quality score per DAG run.

Each Cosmos task is its own dbt invocation, and the on-run-end hook writes one
``quality.run_scores`` row per invocation. The gate scores the whole DAG run instead, with the
formula of docs/DBT.md applied to the union of the run's test results: every
``quality.test_results`` row whose ``orchestrator_run`` is ``'<dag_id>/<run_id>'`` (the dbt tasks set
it, see dag_factory.py). When a test ran more than once in the run (a retried task), its last result
counts. Tests that did not run (skipped, or never reached because an upstream task failed) are not
scored, as in one `dbt build`; a failed dbt task fails the DAG run anyway. The gate records the
score in ``quality.dag_run_scores`` and fails, with an alert, when it is below AF_QUALITY_THRESHOLD.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from common.db import connect
from common.settings import PostgresSettings, postgres_settings
from orchestration.alerts import alert
from orchestration.settings import AirflowSettings, airflow_settings

log = logging.getLogger(__name__)

_SCORE = """
with latest as (
    select distinct on (unique_id) unique_id, dimension, status, test_name
    from quality.test_results
    where orchestrator_run = %(run)s and test_kind = 'data'
    order by unique_id, recorded_at desc
),

scored as (
    select dimension, case status when 'pass' then 100.0 when 'warn' then 50.0 else 0.0 end as points
    from latest
    where status in ('pass', 'warn', 'fail', 'error')
),

dimensions as (
    select dimension, avg(points) as score from scored group by dimension
),

weights (dimension, weight) as (
    select key, value::float8 from jsonb_each_text(%(weights)s::jsonb)
)

select
    (select sum(d.score * w.weight) / nullif(sum(w.weight), 0)
     from dimensions d join weights w using (dimension)) as score,
    (select count(*) from scored) as tests_run,
    (select count(*) from latest where status = 'pass') as passed,
    (select count(*) from latest where status = 'warn') as warned,
    (select count(*) from latest where status in ('fail', 'error')) as failed,
    (select coalesce(json_agg(test_name order by test_name), '[]'::json)
     from latest where status in ('fail', 'error')) as failed_tests,
    (select coalesce(json_object_agg(dimension, round(score::numeric, 2)), '{}'::json) from dimensions)
        as by_dimension
"""

_RECORD = """
create table if not exists quality.dag_run_scores (
    orchestrator_run text primary key,
    dag_id           text not null,
    run_id           text not null,
    score            double precision,
    tests_run        integer not null,
    tests_passed     integer not null,
    tests_warned     integer not null,
    tests_failed     integer not null,
    by_dimension     jsonb not null,
    threshold        double precision not null,
    passed_gate      boolean not null,
    recorded_at      timestamptz not null default now()
);
insert into quality.dag_run_scores (orchestrator_run, dag_id, run_id, score, tests_run, tests_passed,
    tests_warned, tests_failed, by_dimension, threshold, passed_gate)
values (%(run)s, %(dag_id)s, %(run_id)s, %(score)s, %(tests_run)s, %(passed)s, %(warned)s, %(failed)s,
    %(by_dimension)s, %(threshold)s, %(ok)s)
on conflict (orchestrator_run) do update set score = excluded.score, tests_run = excluded.tests_run,
    tests_passed = excluded.tests_passed, tests_warned = excluded.tests_warned,
    tests_failed = excluded.tests_failed, by_dimension = excluded.by_dimension,
    threshold = excluded.threshold, passed_gate = excluded.passed_gate, recorded_at = now()
"""

DEFAULT_WEIGHTS = dict.fromkeys(
    ("completeness", "uniqueness", "validity", "consistency", "freshness", "timeliness"), 1
)


class QualityGateFailed(RuntimeError):
    """The DAG run's data-quality score is below the threshold (or nothing was tested)."""


def orchestrator_run(dag_id: str, run_id: str) -> str:
    """The key the dbt tasks of one DAG run write into quality.* (DBT_ENV_CUSTOM_ENV_ORCHESTRATOR_RUN)."""
    return f"{dag_id}/{run_id}"


@dataclass(frozen=True)
class RunScore:
    run: str
    score: float | None
    tests_run: int
    passed: int
    warned: int
    failed: int
    failed_tests: list[str]
    by_dimension: dict[str, float]
    threshold: float

    @property
    def ok(self) -> bool:
        return self.score is not None and self.score >= self.threshold

    def summary(self) -> str:
        score = "none (no test ran)" if self.score is None else f"{self.score:.2f}"
        text = (
            f"data-quality score of {self.run}: {score} (threshold {self.threshold:g}); "
            f"{self.tests_run} tests: {self.passed} passed, {self.warned} warned, {self.failed} failed"
        )
        if self.failed_tests:
            text += f"; failed: {', '.join(self.failed_tests[:10])}"
        return text


def score_run(
    dag_id: str,
    run_id: str,
    pg: PostgresSettings | None = None,
    settings: AirflowSettings | None = None,
    weights: dict[str, float] | None = None,
) -> RunScore:
    """Score one DAG run from its dbt test results and record it in quality.dag_run_scores."""
    s = settings or airflow_settings()
    run = orchestrator_run(dag_id, run_id)
    conn = connect("writer", pg or postgres_settings())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(_SCORE, {"run": run, "weights": json.dumps(weights or DEFAULT_WEIGHTS)})
            score, tests_run, passed, warned, failed, failed_tests, by_dim = cur.fetchone()
            result = RunScore(
                run, score, tests_run, passed, warned, failed, failed_tests, by_dim, s.quality_threshold
            )
            cur.execute(
                _RECORD,
                {
                    "run": run,
                    "dag_id": dag_id,
                    "run_id": run_id,
                    "score": score,
                    "tests_run": tests_run,
                    "passed": passed,
                    "warned": warned,
                    "failed": failed,
                    "by_dimension": json.dumps(by_dim),
                    "threshold": s.quality_threshold,
                    "ok": result.ok,
                },
            )
    finally:
        conn.close()
    return result


def gate(dag_id: str, run_id: str, task_id: str = "quality_gate", failed_tasks: list[str] = ()) -> dict:
    """The gate task: score the run, log it, fail with the reason (and an alert) below the threshold.

    `failed_tasks` are the run's dbt tasks that failed or never ran because of it: they were alerted
    already, but the gate is the DAG's last task, so it fails too and the run is marked failed.
    """
    result = score_run(dag_id, run_id)
    log.info("event=quality_gate %s", result.summary())
    if not result.ok:
        alert("quality", result.summary(), dag_id, task_id, run_id)
        raise QualityGateFailed(result.summary())
    if failed_tasks:
        raise QualityGateFailed(f"dbt tasks did not succeed: {', '.join(failed_tasks)}; {result.summary()}")
    return {"score": result.score, "tests_run": result.tests_run, "failed": result.failed}
