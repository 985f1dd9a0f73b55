"""End to end from an empty stack (issue 12): two minutes of the synthetic feed through every real part.

    ingest (`python -m ingest synthetic`, its own process)  ->  Kafka (new private topics)
      ->  the streaming job (`python -m spark_streaming run`, its own process)  ->  PostgreSQL (a new,
      migrated private database: raw.*, rt.*)  ->  dbt_intraday and dbt_daily, triggered through a
      private Airflow's scheduler and LocalExecutor  ->  marts.* and quality.dag_run_scores
      ->  the dashboard's Market page (Streamlit AppTest, live timeframe) shows the newest tick
    and a private Prometheus, configured from monitoring/prometheus.yml with each job's target pointed
    at this test's processes (the dashboard's server among them), shows every target up while the
    feed runs.

Nothing is mocked. The shared stack's PostgreSQL server and Kafka broker are used, but only through a
private database and private topics, dropped at the end; Airflow has its own home, metadata database
and ports (devstack/airflow.py starts it, as `make airflow` does). The shared Prometheus scrapes fixed
ports (monitoring/prometheus.yml: ingest :9108, stream :9109, statsd_exporter :9102) that a running
demo or `make airflow` may own, hence the private one; of the shared one the test asserts the targets
the stack itself runs (prometheus, kafka, postgres).

E2E_FEED_S shortens (or lengthens) the feed: 120 s by default, at least 70 (every symbol must close a
1-minute bar). The whole test takes about 4 minutes on 2 cores (3.5-4.5 measured).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path

import pytest
import yaml

from common.contract import Topic
from common.migrate import drop_database, recreate_database
from common.settings import PROJECT_ROOT, PrometheusSettings, kafka_settings, prometheus_settings
from dashboard.server import serving
from dbt_project.runner import run_dbt
from devstack import airflow as af
from devstack.prometheus import render_config
from devstack.statsd import StatsdExporter
from orchestration.settings import AirflowSettings
from spark_streaming.feed import create_topics, delete_topics
from tests.conftest import end_offsets, free_ports
from tests.dashboard.helpers import floats, metrics, no_exception, only_figure, run_page, traces
from tests.orchestration.instance import AirflowInstance
from tests.orchestration.instance import drop_database as drop_named_database
from tests.spark_streaming.helpers import JobProcess, query, wait_for

pytestmark = pytest.mark.slow

FEED_S = float(os.environ.get("E2E_FEED_S", "120"))
RATE = 200  # ticks/s over all symbols
SYMBOLS = 10
SEED = 7
DAGS = ("dbt_intraday", "dbt_daily")


# --- private Prometheus -------------------------------------------------------------------------------
def _prometheus_config(port: int, targets: dict[str, str]) -> str:
    """monitoring/prometheus.yml as devstack renders it, with the jobs of `targets` pointed at this
    test's processes; every other job keeps the target devstack gives it (the shared stack's)."""
    config = yaml.safe_load(render_config(PrometheusSettings(port=port), kafka_settings()))
    config.pop("rule_files", None)  # targets only: the alerts are the chaos test's (and promtool's)
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return yaml.safe_dump(config, sort_keys=False)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


def _targets(url: str) -> list[tuple[str, str, str, str]]:
    """(job, scrape url, health, last error) of every active target."""
    return [
        (t["labels"]["job"], t["scrapeUrl"], t["health"], t.get("lastError", ""))
        for t in _get(f"{url}/api/v1/targets?state=active")["activeTargets"]
    ]


def _say(started: float, what: str) -> None:
    """A line of progress with the seconds since the test began (shown with -s, or on failure)."""
    print(f"e2e +{time.monotonic() - started:6.1f}s {what}", flush=True)


def _configured_jobs() -> set[str]:
    config = yaml.safe_load((PROJECT_ROOT / "monitoring" / "prometheus.yml").read_text())
    return {job["job_name"] for job in config["scrape_configs"]}


# --- helpers --------------------------------------------------------------------------------------------
def _offsets(pg, table: str, where: str = "", args: tuple = ()) -> Counter:
    return Counter(query(pg, f"select kafka_partition, kafka_offset from {table} {where}", args))


def _assert_every_offset_once(ends: dict[int, int], landed: Counter, topic: str) -> None:
    """Each offset 0..end-1 of every partition landed exactly once, and nothing else did."""
    twice = {k: n for k, n in landed.items() if n > 1}
    assert not twice, f"{topic}: offsets landed more than once: {sorted(twice)[:10]}"
    expected = {(p, o) for p, end in ends.items() for o in range(end)}
    missing, extra = expected - set(landed), set(landed) - expected
    assert not missing and not extra, (
        f"{topic}: {len(missing)} offsets missing (e.g. {sorted(missing)[:5]}), "
        f"{len(extra)} unexpected (e.g. {sorted(extra)[:5]})"
    )


BARS_AGAINST_TICKS = """
with ticks as (
    select symbol, date_trunc('minute', event_time) as bar_start,
           (array_agg(price order by event_time))[1] as open, max(price) as high, min(price) as low,
           (array_agg(price order by event_time desc))[1] as close, sum(size) as volume, count(*) as n
    from raw.ticks group by 1, 2
)
select b.symbol, b.bar_start, b.open, t.open, b.high, t.high, b.low, t.low, b.close, t.close,
       b.volume, t.volume, b.trade_count, t.n
from rt.bars_1m as b left join ticks as t using (symbol, bar_start)
where b.is_final
"""


def _bar_differs(row: tuple) -> bool:
    _, _, bo, to, bh, th, bl, tl, bc, tc, bv, tv, bn, tn = row
    if to is None:
        return True
    return (bo, bh, bl, bc, bn) != (to, th, tl, tc, tn) or abs(bv - tv) > 1e-9 * max(abs(tv), 1.0)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return ""


def _private_airflow(root: Path, pg, tag: str, ports: list[int]) -> AirflowInstance:
    """An Airflow of its own (home, metadata database, ports, statsd_exporter) whose dbt tasks build
    in `pg`; the project's DAG files only, as `make airflow` has them."""
    dags = root / "dags"
    dags.mkdir(parents=True)
    for f in (PROJECT_ROOT / "dags").glob("*.py"):
        (dags / f.name).symlink_to(f)
    api, statsd, exporter_port, stream_metrics = ports
    settings = AirflowSettings(
        home=root / "home",
        dags_folder=dags,
        api_port=api,
        database=f"airflow_e2e_{tag}",
        db_user="airflow_e2e",
        statsd_port=statsd,
        statsd_exporter_port=exporter_port,
        dag_refresh_interval_s=10,
        dbt_retries=0,
        task_retries=0,
        # stream_supervisor stays paused; still, nothing of it may point at the shared stream
        stream_query_name=f"e2e_supervised_{tag}",
        stream_home=root / "stream",
        stream_checkpoint_dir=root / "stream-checkpoint",
        stream_database=pg.database,
        stream_metrics_port=stream_metrics,
    )
    return AirflowInstance(settings, pg, af.Airflow(settings, pg), StatsdExporter(settings, root))


def _stop_airflow(instance: AirflowInstance) -> None:
    with ThreadPoolExecutor(4) as pool:  # each waits for its own SIGTERM to finish
        list(pool.map(lambda c: c.stop(), instance.airflow.components().values()))
    instance.exporter.stop()
    drop_named_database(instance.pg, instance.settings.database)


def _dag_run(instance: AirflowInstance, dag_id: str, run_id: str) -> str | None:
    rows = instance.metadata("select state from dag_run where dag_id = %s and run_id = %s", (dag_id, run_id))
    return rows[0][0] if rows else None


def _run_through_scheduler(
    instance: AirflowInstance, dag_id: str, run_id: str, timeout_s: float
) -> tuple[str | None, dict[str, str]]:
    """Unpause, trigger (the scheduler queues it, the LocalExecutor runs it), wait, pause again:
    (the run's final state, {task id: state})."""
    unpaused = instance.cli("dags", "unpause", dag_id)
    assert unpaused.returncode == 0, unpaused.stderr[-2000:]
    triggered = instance.cli("dags", "trigger", dag_id, "--run-id", run_id)
    assert triggered.returncode == 0, triggered.stderr[-2000:]
    instance.wait_for(lambda: _dag_run(instance, dag_id, run_id) in ("success", "failed"), timeout_s, 2)
    instance.cli("dags", "pause", dag_id)
    return _dag_run(instance, dag_id, run_id), instance.task_states(dag_id, run_id)


# --- the test -------------------------------------------------------------------------------------------
def test_synthetic_feed_reaches_raw_rt_marts_quality_dashboard_and_prometheus(
    bootstrap_servers, tmp_path, monkeypatch
):
    began = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    prefix = f"e2e.{tag}"
    topics = {
        Topic.TICKS: f"{prefix}.ticks",  # the names `ingest --topic-prefix` writes to
        Topic.BARS: f"{prefix}.bars",
        Topic.DEADLETTER: f"{prefix}.deadletter",
    }
    # one call: nine distinct ports
    ingest_port, stream_port, prom_port, dashboard_port, dashboard_metrics, *airflow_ports = free_ports(9)
    prom_url = f"http://127.0.0.1:{prom_port}"

    with contextlib.ExitStack() as cleanup:
        # --- an empty stack: a new migrated database, new topics -----------------------------------
        pg = recreate_database(f"market_e2e_{tag}")
        cleanup.callback(drop_database, pg)
        create_topics(bootstrap_servers, topics)
        cleanup.callback(delete_topics, bootstrap_servers, list(topics.values()))
        for table in ("raw.ticks", "raw.bars", "raw.dead_letters", "rt.bars_1m", "rt.stream_ledger"):
            assert query(pg, f"select count(*) from {table}") == [(0,)], table
        assert query(pg, "select count(*) from information_schema.tables where table_schema = 'marts'") == [
            (0,)
        ]
        for topic in topics.values():
            assert sum(end_offsets(bootstrap_servers, topic).values()) == 0, topic

        # --- Airflow starts in the background (metadata migration, dbt parse, its processes) --------
        airflow = _private_airflow(tmp_path / "airflow", pg, tag, airflow_ports)
        drop_named_database(pg, airflow.settings.database)
        airflow.exporter.start()
        cleanup.callback(_stop_airflow, airflow)
        pool = cleanup.enter_context(ThreadPoolExecutor(1))
        airflow_started = pool.submit(af.start, airflow.airflow, 360)

        # --- a private Prometheus over monitoring/prometheus.yml, scraping this test's processes ----
        prom_dir = tmp_path / "prometheus"
        (prom_dir / "data").mkdir(parents=True)
        (prom_dir / "prometheus.yml").write_text(
            _prometheus_config(
                prom_port,
                {
                    "ingest": f"127.0.0.1:{ingest_port}",
                    "stream": f"127.0.0.1:{stream_port}",
                    "airflow": airflow.exporter.address,
                    "dashboard": f"127.0.0.1:{dashboard_metrics}",
                },
            )
        )
        prometheus = subprocess.Popen(
            [
                shutil.which("prometheus") or "/usr/bin/prometheus",
                f"--config.file={prom_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={prom_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=(prom_dir / "prometheus.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        cleanup.callback(_stop, prometheus)
        # the dashboard's server (`python -m dashboard`): its process metrics are a scrape target
        dashboard_env = {
            "DASHBOARD_DATABASE": pg.database,
            "DASHBOARD_METRICS_PORT": str(dashboard_metrics),
            "DASHBOARD_AIRFLOW_URL": airflow.settings.api_url,
        }
        cleanup.enter_context(serving(dashboard_port, tmp_path / "dashboard.log", dashboard_env))

        # --- the streaming job, then the feed -------------------------------------------------------
        job = JobProcess(tmp_path, topics, pg, metrics_port=stream_port)
        job.start()
        cleanup.callback(job.stop)
        ingest_log = tmp_path / "ingest.log"
        ingest = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ingest",
                "synthetic",
                "--rate",
                str(RATE),
                "--symbols",
                str(SYMBOLS),
                "--seed",
                str(SEED),
                "--metrics-port",
                str(ingest_port),
                "--topic-prefix",
                prefix,
                "--bootstrap",
                bootstrap_servers,
            ],
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "INGEST_SPILL_DIR": str(tmp_path / "spill")},
            stdout=ingest_log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        cleanup.callback(_stop, ingest)
        feed_started = time.monotonic()
        _say(began, f"feed started ({RATE}/s over {SYMBOLS} symbols, {FEED_S:g} s), Airflow starting")

        # --- while the feed runs: every target of the private Prometheus up --------------------------
        def all_up() -> bool:
            found = _targets(prom_url)
            return bool(found) and all(health == "up" for _, _, health, _ in found)

        try:
            wait_for(all_up, 240, "every Prometheus target up")
        except AssertionError:
            found = _targets(prom_url) if prometheus.poll() is None else _tail(prom_dir / "prometheus.log")
            raise AssertionError(f"not every target is up: {found}\nstream: {job.log_tail()}") from None
        assert {job_name for job_name, *_ in _targets(prom_url)} == _configured_jobs()
        _say(began, f"every Prometheus target up: {sorted(_configured_jobs())}")
        assert ingest.poll() is None, f"ingest ended early: {_tail(ingest_log)}"
        assert job.alive(), job.log_tail()
        # the shared Prometheus: the stack's own targets (the others are on fixed ports, see above)
        shared = _targets(prometheus_settings().url)
        for job_name in ("prometheus", "kafka", "postgres"):
            assert [h for j, _, h, _ in shared if j == job_name] == ["up"], (job_name, shared)

        # --- the feed for FEED_S seconds, then a clean stop (SIGTERM: the producer flushes) ---------
        time.sleep(max(0.0, FEED_S - (time.monotonic() - feed_started)))
        _stop(ingest)
        report = _tail(ingest_log)
        assert ingest.returncode == 0, report
        counted = re.search(r"read (\d+)\s+accepted (\d+)\s+dead-lettered (\d+)", report)
        assert counted, report
        read, accepted, dead_lettered = map(int, counted.groups())
        ends = {t: end_offsets(bootstrap_servers, name) for t, name in topics.items()}
        written = {t: sum(e.values()) for t, e in ends.items()}
        assert read >= RATE * FEED_S * 0.5, report  # the feed really ran for about FEED_S
        assert written[Topic.TICKS] == accepted and written[Topic.DEADLETTER] == dead_lettered, report
        assert written[Topic.BARS] == 0
        _say(began, f"feed stopped: {written[Topic.TICKS]} ticks, {written[Topic.DEADLETTER]} dead letters")

        # --- the stream consumed every record the feed wrote -----------------------------------------
        total = sum(written.values())
        try:
            wait_for(
                lambda: query(pg, "select coalesce(sum(input_rows), 0) from rt.stream_ledger")[0][0] >= total,
                240,
                f"the streaming job to consume all {total} records",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{job.log_tail()}") from None
        assert query(pg, "select sum(input_rows) from rt.stream_ledger")[0][0] == total  # nothing twice
        job.stop()  # all consumed: its CPU goes to Airflow (the feed has stopped, rt stays as it is)

        # every offset written is in raw.ticks or raw.dead_letters, exactly once
        ticks_topic, dl_topic = topics[Topic.TICKS], topics[Topic.DEADLETTER]
        _assert_every_offset_once(
            ends[Topic.TICKS],
            _offsets(pg, "raw.ticks")
            + _offsets(pg, "raw.dead_letters", "where kafka_topic = %s", (ticks_topic,)),
            ticks_topic,
        )
        letters = _offsets(pg, "raw.dead_letters", "where kafka_topic = %s", (dl_topic,))
        _assert_every_offset_once(ends[Topic.DEADLETTER], letters, dl_topic)
        (ticks,) = query(pg, "select count(*) from raw.ticks")[0]
        assert ticks > 0 and query(pg, "select count(distinct symbol) from raw.ticks") == [(SYMBOLS,)]

        # rt: 1-minute bars (each closed one equals its ticks) and their indicators
        (bars, closed) = query(pg, "select count(*), count(*) filter (where is_final) from rt.bars_1m")[0]
        assert closed >= SYMBOLS, (bars, closed)  # two minutes: every symbol closed a bar at least
        rows = query(pg, BARS_AGAINST_TICKS)
        assert len(rows) == closed and not [r for r in rows if _bar_differs(r)][:5]
        (indicators,) = query(pg, "select count(*) from rt.indicators_1m")[0]
        assert indicators > 0
        (signals,) = query(pg, "select count(*) from rt.signals")[0]  # a two-minute feed may make none
        _say(
            began,
            f"stream: {ticks} ticks, {bars} bars ({closed} closed), {indicators} indicators,"
            f" {signals} signals",
        )

        # --- dbt, run by Airflow: both dbt DAGs triggered through the scheduler ----------------------
        airflow_started.result()
        _say(began, "Airflow up")
        # the exchange's closed weekdays: reference data a deployment seeds once (docs/DBT.md)
        seeded = run_dbt(["seed"], pg=pg, target_path=tmp_path / "seed-target")
        assert seeded.ok, seeded.stdout[-2000:]
        known = "select dag_id from dag where dag_id = any(%s) and not is_stale"
        parsed = airflow.wait_for(lambda: len(airflow.metadata(known, (list(DAGS),))) == len(DAGS), 180)
        assert parsed, airflow.metadata("select filename, stacktrace from import_error")
        # one after the other: both build the staging of the stream's bars
        run_ids = {dag_id: f"e2e_{tag}_{dag_id}" for dag_id in DAGS}
        for dag_id, run_id in run_ids.items():
            state, tasks = _run_through_scheduler(airflow, dag_id, run_id, timeout_s=420)
            assert state == "success", (dag_id, state, tasks)
            _say(began, f"{dag_id} run {run_id}: {state}, {len(tasks)} tasks")

        # a quality score recorded for each DAG run, through its gate
        for dag_id, run_id in run_ids.items():
            scores = query(
                pg,
                "select score, tests_run, tests_failed, passed_gate from quality.dag_run_scores"
                " where dag_id = %s and run_id = %s",
                (dag_id, run_id),
            )
            assert len(scores) == 1, (dag_id, scores)
            score, tests_run, tests_failed, passed_gate = scores[0]
            assert score is not None and tests_run > 0 and tests_failed == 0 and passed_gate, scores
            warned = query(
                pg,
                "select distinct test_name from quality.test_results where orchestrator_run = %s"
                " and status = 'warn' order by 1",
                (f"{dag_id}/{run_id}",),
            )
            _say(began, f"{dag_id} quality score {score:.1f} over {tests_run} tests, warnings: {warned}")

        # marts: the stream marts hold every rt row, the daily marts every (symbol, trade date)
        same_bars = query(
            pg,
            "select count(*) from rt.bars_1m b join marts.fct_intraday_bars_1m m using (symbol, bar_start)"
            " where m.close = b.close and m.volume = b.volume and m.is_final = b.is_final",
        )
        assert same_bars == [(bars,)]
        assert query(pg, "select count(*) from marts.fct_intraday_bars_1m") == [(bars,)]
        assert query(pg, "select count(*) from marts.fct_intraday_signals") == [(signals,)]
        days = query(pg, "select count(distinct (symbol, trade_date)) from marts.fct_intraday_bars_1m")
        assert query(pg, "select count(*) from marts.fct_daily_prices") == days
        assert query(pg, "select count(*) from marts.dim_symbols") == [(SYMBOLS,)]

        # --- the dashboard's Market page, live timeframe: the newest tick -----------------------------
        symbol, event_time, price = query(
            pg, "select symbol, event_time, price from raw.ticks order by event_time desc limit 1"
        )[0]
        monkeypatch.setenv("DASHBOARD_DATABASE", pg.database)
        at = run_page("market", {"symbol": symbol, "timeframe": "live"})
        no_exception(at)
        shown = metrics(at)
        assert shown["Symbol"] == symbol
        assert shown["Last price"] == f"{price:,.2f}", (shown, price)
        assert shown["As of (UTC)"] == f"{event_time.astimezone(UTC):%H:%M:%S.%f}"[:-3], (shown, event_time)
        # the live chart: the day's closed bars as candles, the still-open ones (the newest tick's
        # among them, last) as the forming bar
        day = query(
            pg,
            "select close, is_final from rt.bars_1m where symbol = %s and bar_start >= (select"
            " date_trunc('day', max(bar_start) at time zone 'UTC') at time zone 'UTC' from rt.bars_1m"
            " where symbol = %s) order by bar_start",
            (symbol, symbol),
        )
        t = traces(only_figure(at))
        assert floats(t["price"]["close"]).tolist() == [close for close, final in day if final]
        forming = floats(t["forming bar"]["close"]).tolist()
        assert forming == [close for close, final in day if not final] and forming[-1] == price
        _say(began, f"dashboard: {symbol} {shown['Last price']} at {shown['As of (UTC)']}")
