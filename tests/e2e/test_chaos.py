"""The whole demo on a private stack, built once: end to end from an empty stack, then `make chaos`'s
short form (issue 12).

A second stack of its own (PostgreSQL server, Kafka broker, Prometheus with the project's alert rules,
the PostgreSQL exporter, statsd_exporter, Airflow, the demo's ingest, streaming job and dashboard), on
free loopback ports and a state folder of its own, started by the same commands a user runs:
`devstack up` (checked empty: a new migrated database, topics without records), then `devstack demo`
(smaller than the default: 5 symbols, 210 days of daily history, 200 ticks/s) while
`devstack airflow --unpause` starts Airflow. Nothing is mocked. The module builds it once (the
expensive part: 87 s on 2 cores at load 2-4, more under load) for its two tests, which run in this order:

1. end to end. Every target of the stack's Prometheus (monitoring/prometheus.yml as devstack renders
   it: ingest, stream, dashboard and statsd_exporter on this stack's ports) up. Ingest paused (SIGTERM:
   its producer flushes and reports) and the stream drained; then: every offset of the ticks, bars and
   dead-letter topics in raw.ticks / raw.bars / raw.dead_letters exactly once, ingest's own counts equal
   to the topics', the stream's ledger counting each record once, every closed 1-minute bar equal to its
   ticks, indicators made; dbt_intraday and dbt_daily triggered through the stack's Airflow scheduler
   (LocalExecutor) succeed with a quality score through the gate each; the marts hold every rt bar and
   signal and every (symbol, trade date) of the history and the stream; the dashboard's Market page
   (Streamlit AppTest, live timeframe, on this stack's database) shows the newest tick and the day's
   bars. Ingest is resumed at the end. Seen failing with the page's last price a cent off (every
   check before it passed: the checks run on the demo, not only the chaos after it).

2. chaos, `devstack chaos` with short holds:

  kafka      stopped 20 s           TargetDown seen (pending or firing), cleared after the restart
  stream     SIGKILL, 15 s          TargetDown seen; started again (by the supervisor DAG or by
                                    chaos), caught up
  postgres   stopped 20 s           PostgresDown seen (pending: its `for` is 30 s), cleared
  scheduler  SIGKILL, 15 s          started again; its alert needs a flat heartbeat for 2 minutes,
                                    longer than this hold: `make chaos` holds it 210 s

   Afterwards chaos's accounting must find every offset written to the ticks topic during the run in
   raw.ticks or raw.dead_letters exactly once (or a duplicate of a landed tick, dropped by design),
   nothing lost, and every closed 1-minute bar equal to its ticks; every Prometheus target is up again.

The alerts' `for` durations are proven by `promtool test rules` (tests/foundation/test_alert_rules.py);
the full-length run with every alert firing is `make chaos` (figures in docs/OPERATIONS.md). The shared
stack's own Prometheus targets are tests/foundation/test_prometheus.py's. About 5 minutes on 2 cores
(302 s at load 2-4: 87 s the stack and demo, 60 s end to end, 131 s chaos, 25 s down).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import pytest
import streamlit as st
import yaml

from common import settings as common_settings
from common.contract import Topic
from common.settings import PROJECT_ROOT, PostgresSettings, stack_settings
from devstack import airflow as af
from devstack.demo import DemoPlan, processes
from devstack.process import wait_until
from devstack.statsd import StatsdExporter
from ingest import settings as ingest_settings
from orchestration import settings as orchestration_settings
from tests.conftest import end_offsets, free_ports
from tests.dashboard.helpers import floats, metrics, no_exception, only_figure, run_page, traces
from tests.foundation.private_stack import PYTHON, devstack, private_env
from tests.orchestration.instance import AirflowInstance
from tests.spark_streaming.helpers import query, wait_for

pytestmark = pytest.mark.slow

SYMBOLS, HISTORY_DAYS, RATE = 5, 210, 200  # the demo's plan here: `devstack demo` options
DAGS = ("dbt_intraday", "dbt_daily")
HOLDS = {"kafka": 20, "stream": 15, "postgres": 20, "scheduler": 15}
ALERT_SEEN = {"kafka", "stream", "postgres"}  # TargetDown, TargetDown, PostgresDown: active within a scrape
EMPTY_AT_START = ("raw.ticks", "raw.bars", "raw.dead_letters", "rt.bars_1m", "rt.stream_ledger")


def _check(result, what: str) -> None:
    assert result.returncode == 0, (
        f"{what} failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )


def _say(started: float, what: str) -> None:
    """A line of progress with the seconds since `started` (shown with -s, or on failure)."""
    print(f"e2e +{time.monotonic() - started:6.1f}s {what}", flush=True)


def _targets(prometheus_port: int) -> dict[str, str]:
    url = f"http://127.0.0.1:{prometheus_port}/api/v1/targets?state=active"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    return {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}


def _active_alerts(prometheus_port: int) -> set[str]:
    """Names of the alerts pending or firing."""
    with urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/api/v1/alerts", timeout=5) as resp:
        body = json.load(resp)
    return {a["labels"]["alertname"] for a in body["data"]["alerts"] if a["state"] in ("pending", "firing")}


def _configured_jobs() -> set[str]:
    config = yaml.safe_load((PROJECT_ROOT / "monitoring" / "prometheus.yml").read_text())
    return {job["job_name"] for job in config["scrape_configs"]}


def _topic_counts(bootstrap: str) -> dict[Topic, dict[int, int]]:
    return {t: end_offsets(bootstrap, t.value) for t in Topic}


@dataclass
class DemoStack:
    env: dict[str, str]
    state: Path
    pg: PostgresSettings  # this stack's PostgreSQL server, its `market` database
    bootstrap: str
    prometheus_port: int
    empty_at_start: dict[str, int]  # rows of each table, records of each topic, marts tables after `up`


@pytest.fixture(scope="module")
def demo_stack():
    # not under pytest's tmp folder: the postgres user must traverse the path to its data directory
    state = Path(tempfile.mkdtemp(prefix="chaos-", dir="/tmp"))
    state.chmod(0o755)
    (state / "bin").symlink_to(stack_settings().state_dir.resolve() / "bin")  # statsd_exporter (make setup)
    ingest, stream, api, statsd, statsd_exporter, dashboard, dashboard_metrics = free_ports(7)
    env = private_env(
        state,
        INGEST_METRICS_PORT=str(ingest),
        STREAM_METRICS_PORT=str(stream),
        AF_API_PORT=str(api),
        AF_STATSD_PORT=str(statsd),
        AF_STATSD_EXPORTER_PORT=str(statsd_exporter),
        DASHBOARD_PORT=str(dashboard),
        DASHBOARD_METRICS_PORT=str(dashboard_metrics),
    )
    began = time.monotonic()
    try:
        _check(devstack(env, "up", timeout=300), "devstack up")
        pg = PostgresSettings(port=int(env["PG_PORT"]))
        bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
        empty = {table: query(pg, f"select count(*) from {table}")[0][0] for table in EMPTY_AT_START}
        empty["marts tables"] = query(
            pg, "select count(*) from information_schema.tables where table_schema = 'marts'"
        )[0][0]
        empty.update({t.value: sum(ends.values()) for t, ends in _topic_counts(bootstrap).items()})
        _say(began, "devstack up")
        with ThreadPoolExecutor(1) as pool:  # Airflow starts while the demo runs (both need the stack only)
            airflow = pool.submit(devstack, env, "airflow", "--unpause", timeout=600)
            demo = devstack(
                env,
                "demo",
                *("--symbols", str(SYMBOLS), "--history-days", str(HISTORY_DAYS), "--rate", str(RATE)),
                timeout=600,
            )
            _check(demo, "devstack demo")
            _check(airflow.result(), "devstack airflow")
        assert "live ticks on the dashboard" in demo.stdout + demo.stderr, demo.stderr[-2000:]
        _say(began, "devstack demo and devstack airflow --unpause")
        yield DemoStack(env, state, pg, bootstrap, int(env["PROMETHEUS_PORT"]), empty)
    finally:
        devstack(env, "demo-stop", timeout=120)
        devstack(env, "down", timeout=300)
        shutil.rmtree(state, ignore_errors=True)


_CACHED_SETTINGS = (
    common_settings.postgres_settings,
    common_settings.kafka_settings,
    common_settings.prometheus_settings,
    common_settings.contract_settings,
    common_settings.stack_settings,
    orchestration_settings.airflow_settings,
    ingest_settings.ingest_settings,
)


@pytest.fixture
def as_demo_stack(demo_stack, monkeypatch):
    """This process's settings read the private stack's environment (its PostgreSQL port, state
    folder, Airflow ports): for the dashboard's pages and the Airflow CLI run from here."""
    for name, value in demo_stack.env.items():
        monkeypatch.setenv(name, value)
    # the dashboard reads the demo's database, not one an earlier test of the session chose (the
    # dashboard suite's session fixture sets DASHBOARD_DATABASE until the session ends)
    monkeypatch.setenv("DASHBOARD_DATABASE", demo_stack.pg.database)
    for cached in _CACHED_SETTINGS:
        cached.cache_clear()
    yield demo_stack
    for cached in _CACHED_SETTINGS:  # monkeypatch restores the environment after this
        cached.cache_clear()


def _demo_ingest(env: dict[str, str], action: str) -> None:
    """Stop or start the demo's ingest (its `ticks` process), as `devstack chaos` pauses it."""
    code = f"from devstack.demo import DemoPlan, processes; processes(DemoPlan.current())['ticks'].{action}()"
    done = subprocess.run(
        [PYTHON, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    _check(done, f"the demo's ingest {action}")


# --- end to end ---------------------------------------------------------------------------------------
def _offsets(pg: PostgresSettings, table: str, where: str = "", args: tuple = ()) -> Counter:
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


def _dag_run(instance: AirflowInstance, dag_id: str, run_id: str) -> str | None:
    rows = instance.metadata("select state from dag_run where dag_id = %s and run_id = %s", (dag_id, run_id))
    return rows[0][0] if rows else None


def _run_through_scheduler(
    instance: AirflowInstance, dag_id: str, run_id: str, timeout_s: float
) -> tuple[str | None, dict[str, str]]:
    """Trigger (the scheduler queues it, the LocalExecutor runs it) and wait: (the run's final state,
    {task id: state}). `devstack airflow --unpause` unpaused the DAG."""
    triggered = instance.cli("dags", "trigger", dag_id, "--run-id", run_id)
    assert triggered.returncode == 0, triggered.stderr[-2000:]
    instance.wait_for(lambda: _dag_run(instance, dag_id, run_id) in ("success", "failed"), timeout_s, 2)
    return _dag_run(instance, dag_id, run_id), instance.task_states(dag_id, run_id)


def test_demo_from_an_empty_stack_reaches_raw_rt_marts_quality_dashboard_and_prometheus(as_demo_stack):
    stack = as_demo_stack
    pg, began = stack.pg, time.monotonic()
    assert stack.empty_at_start == dict.fromkeys(stack.empty_at_start, 0), stack.empty_at_start

    # --- while the demo runs: every target of its Prometheus up -------------------------------------
    all_up = wait_until(lambda: all(h == "up" for h in _targets(stack.prometheus_port).values()), 90, 2.0)
    assert all_up, _targets(stack.prometheus_port)
    assert set(_targets(stack.prometheus_port)) == _configured_jobs()
    _say(began, f"every Prometheus target up: {sorted(_configured_jobs())}")

    # --- ingest paused (SIGTERM: the producer flushes, the CLI reports its counts) --------------------
    _demo_ingest(stack.env, "stop")
    try:
        report = processes(DemoPlan.current())["ticks"].log_file.read_text(errors="replace")
        counted = re.findall(r"read (\d+)\s+accepted (\d+)\s+dead-lettered (\d+)", report)
        assert counted, report[-3000:]
        read, accepted, dead_lettered = map(int, counted[-1])
        ends = _topic_counts(stack.bootstrap)
        written = {t: sum(e.values()) for t, e in ends.items()}
        assert read > 0 and written[Topic.TICKS] == accepted, (report[-3000:], written)
        assert written[Topic.DEADLETTER] == dead_lettered, (report[-3000:], written)
        assert written[Topic.BARS] == SYMBOLS * HISTORY_DAYS, written  # the replayed history
        _say(
            began,
            f"ingest paused: {accepted} ticks, {dead_lettered} dead letters, {written[Topic.BARS]} bars",
        )

        # the stream consumed every record once (its ledger counts each batch's input)
        total = sum(written.values())
        ledger = "select coalesce(sum(input_rows), 0) from rt.stream_ledger"
        wait_for(lambda: query(pg, ledger)[0][0] >= total, 240, f"the stream to consume all {total} records")
        assert query(pg, ledger) == [(total,)]  # nothing twice

        # every offset written is in raw.ticks, raw.bars or raw.dead_letters, exactly once
        for topic, table in ((Topic.TICKS, "raw.ticks"), (Topic.BARS, "raw.bars")):
            landed = _offsets(pg, table) + _offsets(
                pg, "raw.dead_letters", "where kafka_topic = %s", (topic.value,)
            )
            _assert_every_offset_once(ends[topic], landed, topic.value)
        letters = _offsets(pg, "raw.dead_letters", "where kafka_topic = %s", (Topic.DEADLETTER.value,))
        _assert_every_offset_once(ends[Topic.DEADLETTER], letters, Topic.DEADLETTER.value)
        (ticks,) = query(pg, "select count(*) from raw.ticks")[0]
        assert ticks > 0 and query(pg, "select count(distinct symbol) from raw.ticks") == [(SYMBOLS,)]

        # rt: 1-minute bars (each closed one equals its ticks) and their indicators
        (bars, closed) = query(pg, "select count(*), count(*) filter (where is_final) from rt.bars_1m")[0]
        assert closed >= SYMBOLS, (bars, closed)  # the demo waited for indicators: a bar closed each
        rows = query(pg, BARS_AGAINST_TICKS)
        assert len(rows) == closed and not [r for r in rows if _bar_differs(r)][:5]
        (indicators,) = query(pg, "select count(*) from rt.indicators_1m")[0]
        assert indicators > 0
        (signals,) = query(pg, "select count(*) from rt.signals")[0]  # a short feed may make none
        _say(
            began,
            f"stream: {ticks} ticks, {bars} bars ({closed} closed), {indicators} indicators,"
            f" {signals} signals",
        )

        # --- dbt, run by Airflow: both dbt DAGs triggered through the scheduler ----------------------
        settings = orchestration_settings.AirflowSettings()  # this stack's, as `devstack airflow` had it
        airflow = AirflowInstance(
            settings, pg, af.Airflow(settings, pg), StatsdExporter(settings, stack.state)
        )
        tag = f"{time.time():.0f}"
        run_ids = {dag_id: f"e2e_{tag}_{dag_id}" for dag_id in DAGS}
        for dag_id, run_id in run_ids.items():  # one after the other: both build the stream's staging
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

        # marts: the stream marts hold every rt row, the daily marts every (symbol, trade date) of the
        # replayed history and of the stream's bars
        same_bars = query(
            pg,
            "select count(*) from rt.bars_1m b join marts.fct_intraday_bars_1m m using (symbol, bar_start)"
            " where m.close = b.close and m.volume = b.volume and m.is_final = b.is_final",
        )
        assert same_bars == [(bars,)]
        assert query(pg, "select count(*) from marts.fct_intraday_bars_1m") == [(bars,)]
        assert query(pg, "select count(*) from marts.fct_intraday_signals") == [(signals,)]
        days = query(
            pg,
            "select count(*) from (select symbol, trade_date from marts.fct_intraday_bars_1m union"
            " select symbol, trade_date from staging.stg_raw__bars where bar_interval = '1d') as d",
        )
        assert query(pg, "select count(*) from marts.fct_daily_prices") == days
        assert query(pg, "select count(*) from marts.dim_symbols") == [(SYMBOLS,)]

        # --- the dashboard's Market page, live timeframe: the newest tick -----------------------------
        symbol, event_time, price = query(
            pg, "select symbol, event_time, price from raw.ticks order by event_time desc limit 1"
        )[0]
        st.cache_data.clear()  # its reads are cached by database name: `market`, as the shared stack's
        at = run_page("market", {"symbol": symbol, "timeframe": "live"})
        no_exception(at)
        shown = metrics(at)
        page = [m.value for m in (*at.error, *at.warning, *at.info, *at.caption)]
        assert shown.get("Symbol") == symbol, (shown, page)
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
    finally:
        _demo_ingest(stack.env, "start")  # the chaos test runs on the live demo


# --- chaos --------------------------------------------------------------------------------------------
def test_chaos_short_form_loses_nothing_and_alerts(demo_stack, tmp_path):
    env, report, port = demo_stack.env, tmp_path / "chaos.json", demo_stack.prometheus_port
    # the alerts chaos waits for are not active before it (ingest was paused by the test above)
    quiet = wait_until(
        lambda: (
            all(h == "up" for h in _targets(port).values())
            and not _active_alerts(port) & {"TargetDown", "PostgresDown"}
        ),
        180,
        interval_s=2.0,
    )
    assert quiet, (_targets(port), _active_alerts(port))
    holds = [arg for name, s in HOLDS.items() for arg in ("--hold", f"{name}={s}")]
    chaos = devstack(env, "chaos", *holds, "--report", str(report), timeout=1_800)
    _check(chaos, "devstack chaos")

    result = json.loads(report.read_text())
    faults = {f["name"]: f for f in result["faults"]}
    assert set(faults) == set(HOLDS)
    for name, fault in faults.items():
        assert fault["back_after_s"] is not None, f"{name} never came back"
        assert fault["caught_up_after_s"] is not None, f"the stream never caught up after {name}"
        assert fault["alert_cleared"], f"{fault['expected_alert']} still active after {name}"
    for name in ALERT_SEEN:
        assert faults[name]["alert_pending_after_s"] is not None, (
            f"{faults[name]['expected_alert']} never became active while {name} was down"
        )
    acc = result["accounting"]
    assert acc["written"] > 0 and acc["landed_once"] > 0
    assert acc["lost"] == 0 and acc["landed_twice"] == 0, acc
    assert acc["bars_checked"] > 0 and acc["bars_differing"] == 0, acc
    # chaos resumed ingest at its end: every target answers again within a few scrapes
    all_up = wait_until(lambda: all(h == "up" for h in _targets(port).values()), 90, interval_s=2.0)
    assert all_up, _targets(port)
    assert set(_targets(port)) == _configured_jobs()
