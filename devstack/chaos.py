"""`make chaos`: break each part of the running demo in turn, then prove nothing was lost.

Needs `make demo` running (stack, ingest's synthetic ticks, the streaming job, Airflow with the
stream_supervisor DAG). Faults, one after another, each held for a while:

  kafka       the broker stopped, then started again
  stream      the streaming job killed with SIGKILL, its first shard with STREAM_SHARDS (the
              stream_supervisor DAG should start it again; if it has not after the hold plus two of
              its periods, chaos starts it and says so)
  postgres    PostgreSQL stopped, then started again
  scheduler   the Airflow scheduler killed with SIGKILL, then started again

For each fault it records when the alert Prometheus should raise became pending (its expression
true) and firing (held for the rule's `for`), from Prometheus's API, and how long after the repair the
stream had caught up (Kafka's end offsets reached by the job's committed batches,
as the supervisor measures it). At the end ingest is paused until the stream has drained, and every
offset written to the ticks topic during the run is looked up: in raw.ticks or raw.dead_letters once,
or a duplicate of a landed tick (same symbol and event time, dropped by design); anything else is lost.
Closed 1-minute bars of the window are compared with their ticks. Ingest is resumed afterwards.

Holds shorter than an alert's windows (`--hold kafka=40`, as the test suite's short form does) see the
alert pending, not firing; the `for` durations themselves are proven by `promtool test rules`.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from common.contract import Topic
from common.db import connect
from common.settings import kafka_settings, postgres_settings, prometheus_settings
from devstack.process import PidFileProcess, wait_until

TICKS_TOPIC = Topic.TICKS.value


@dataclass
class Fault:
    name: str
    expected_alert: str
    hold_s: float  # long enough for the expected alert's own `for` and range windows
    inject: Callable[[], None]
    repair: Callable[[], str]  # returns who repaired it
    is_up: Callable[[], bool]


@dataclass
class FaultReport:
    name: str
    expected_alert: str
    alert_pending_after_s: float | None = None
    alert_after_s: float | None = None
    alert_cleared: bool | None = None
    repaired_by: str = ""
    back_after_s: float | None = None
    caught_up_after_s: float | None = None


def firing_alerts(states: tuple[str, ...] = ("firing",)) -> set[str]:
    """Names of the alerts Prometheus reports in one of `states` (pending, firing; its HTTP API)."""
    url = f"{prometheus_settings().url}/api/v1/alerts"
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            body = json.load(resp)
    except OSError:
        return set()
    return {
        alert["labels"]["alertname"]
        for alert in body.get("data", {}).get("alerts", [])
        if alert.get("state") in states
    }


def stream_lag() -> int | None:
    """Records of the stream's topics not yet in a committed batch (the supervisor's own measure),
    summed over the demo's shards; None while a shard has no measure."""
    from devstack.demo import DemoPlan
    from orchestration.settings import airflow_settings
    from orchestration.stream_supervisor import observe, shards

    settings = airflow_settings().model_copy(update={"stream_shards": DemoPlan.current().stream_shards})
    try:
        lags = [observe(settings, shard=shard).lag for shard in shards(settings)]
    except Exception:  # a database or broker still coming back
        return None
    return None if None in lags else sum(lags)


def _lag_below(records: int) -> bool:
    lag = stream_lag()
    return lag is not None and lag < records


def _services():
    from devstack import stack

    return {**stack.services(), **stack.optional_services()}


def _kill(name: str) -> None:
    pid = _services()[name].pid()
    if pid:
        os.kill(pid, signal.SIGKILL)


def _restart_stream_unless_supervised(proc: PidFileProcess, wait_s: float) -> str:
    """Wait up to `wait_s` for the stream_supervisor DAG to bring the job (shard) back, else start it."""
    if wait_until(proc.running, wait_s, interval_s=2.0):
        return "stream_supervisor"
    proc.start()
    return "chaos (the supervisor had not)"


def _start(name: str) -> Callable[[], str]:
    def start() -> str:
        svc = _services()[name]
        svc.start()
        wait_until(svc.healthy, 180, interval_s=1.0)
        return "chaos"

    return start


def _running(name: str) -> Callable[[], bool]:
    return lambda: _services()[name].running()


def faults(holds: dict[str, float] | None = None) -> list[Fault]:
    """The faults in order; `holds` replaces the hold of the faults it names ("*": every fault).

    A shortened stream hold also shortens the wait for the supervisor (it checks once a minute)."""
    holds = holds or {}

    def hold(name: str, default: float) -> float:
        return holds.get(name, holds.get("*", default))

    from devstack.demo import DemoPlan, stream_processes

    stream = stream_processes(DemoPlan.current())[0]  # the job, or its first shard
    listed = [
        # TargetDown: up == 0 for 1 min
        Fault(
            "kafka",
            "TargetDown",
            hold("kafka", 90),
            lambda: _services()["kafka"].stop(),
            _start("kafka"),
            _running("kafka"),
        ),
        # the supervisor checks every minute: it may bring the job back before TargetDown's minute
        Fault(
            "stream",
            "TargetDown",
            hold("stream", 90),
            lambda: os.kill(stream.pid(), signal.SIGKILL) if stream.pid() else None,
            lambda: _restart_stream_unless_supervised(stream, 150 if hold("stream", 90) >= 90 else 5),
            stream.running,
        ),
        # PostgresDown: pg_up == 0 for 30 s
        Fault(
            "postgres",
            "PostgresDown",
            hold("postgres", 60),
            lambda: _services()["postgresql"].stop(),
            _start("postgresql"),
            _running("postgresql"),
        ),
        # AirflowSchedulerDown: no heartbeat over 2 min, for 1 min
        Fault(
            "scheduler",
            "AirflowSchedulerDown",
            hold("scheduler", 210),
            lambda: _kill("airflow-scheduler"),
            _start("airflow-scheduler"),
            _running("airflow-scheduler"),
        ),
    ]
    return listed


def _ticks_offsets() -> dict[int, int]:
    from orchestration.stream_supervisor import end_offsets

    return end_offsets([TICKS_TOPIC]).get(TICKS_TOPIC, {})


def _note_alert(report: FaultReport, alert: str, started: float) -> None:
    """Record when `alert` was first seen pending (or straight away firing) and first seen firing."""
    seen = {state for state in ("pending", "firing") if alert in firing_alerts((state,))}
    now = round(time.monotonic() - started, 1)
    if seen and report.alert_pending_after_s is None:
        report.alert_pending_after_s = now
    if "firing" in seen and report.alert_after_s is None:
        report.alert_after_s = now


def inject_and_recover(fault: Fault, console: Console, catch_up_s: float = 600) -> FaultReport:
    report = FaultReport(fault.name, fault.expected_alert)
    console.print(f"[bold]{fault.name}[/]: injecting, holding {fault.hold_s:.0f} s")
    started = time.monotonic()
    fault.inject()
    seen_down = False  # a SIGKILLed process may still look alive for a moment
    while time.monotonic() - started < fault.hold_s:
        _note_alert(report, fault.expected_alert, started)
        up = fault.is_up()
        seen_down = seen_down or not up
        if report.back_after_s is None and seen_down and up:
            report.back_after_s = round(time.monotonic() - started, 1)
        time.sleep(2)
    report.repaired_by = fault.repair()
    repaired = time.monotonic()
    if report.back_after_s is None:
        report.back_after_s = round(repaired - started, 1)
    _note_alert(report, fault.expected_alert, started)
    caught_up = wait_until(lambda: _lag_below(5_000), catch_up_s, interval_s=2.0)
    if caught_up:
        report.caught_up_after_s = round(time.monotonic() - repaired, 1)
    report.alert_cleared = wait_until(
        lambda: fault.expected_alert not in firing_alerts(("pending", "firing")), 180, interval_s=5.0
    )
    console.print(f"  {report}")
    return report


@dataclass
class Accounting:
    written: int
    landed_once: int
    dead_lettered: int
    duplicates_of_landed: int
    landed_twice: int
    lost: int
    bars_checked: int
    bars_differing: int


def account(start: dict[int, int], end: dict[int, int]) -> Accounting:
    """Every ticks-topic offset in [start, end) per partition: where did it go?"""
    from confluent_kafka import Consumer, TopicPartition

    pg = postgres_settings()
    conn = connect("admin", pg)
    seen: dict[tuple[int, int], int] = {}
    dead_total = 0
    try:
        with conn, conn.cursor() as cur:
            for partition, first in start.items():
                last = end.get(partition, first)
                cur.execute(
                    "select kafka_offset, count(*) from raw.ticks where kafka_partition = %s"
                    " and kafka_offset >= %s and kafka_offset < %s group by 1",
                    (partition, first, last),
                )
                for offset, n in cur.fetchall():
                    seen[(partition, offset)] = seen.get((partition, offset), 0) + n
                cur.execute(
                    "select kafka_offset, count(*) from raw.dead_letters where kafka_topic = %s"
                    " and kafka_partition = %s and kafka_offset >= %s and kafka_offset < %s group by 1",
                    (TICKS_TOPIC, partition, first, last),
                )
                for offset, n in cur.fetchall():
                    seen[(partition, offset)] = seen.get((partition, offset), 0) + n
                    dead_total += n
            missing = [
                (p, o)
                for p, first in start.items()
                for o in range(first, end.get(p, first))
                if (p, o) not in seen
            ]
            duplicates = 0
            if missing:
                consumer = Consumer(
                    {
                        "bootstrap.servers": kafka_settings().bootstrap_servers,
                        "group.id": f"chaos-{time.time()}",
                        "enable.auto.commit": False,
                    }
                )
                try:
                    for p, o in missing:
                        consumer.assign([TopicPartition(TICKS_TOPIC, p, o)])
                        msg = consumer.consume(1, timeout=10)
                        if not msg or msg[0].error():
                            continue
                        tick = json.loads(msg[0].value())
                        cur.execute(
                            "select 1 from raw.ticks where symbol = %s"
                            " and event_time = to_timestamp(%s / 1000.0)",
                            (tick.get("symbol"), tick.get("event_time_ms")),
                        )
                        duplicates += cur.fetchone() is not None
                finally:
                    consumer.close()
            cur.execute(
                """
                with closed as (
                    select b.* from rt.bars_1m b
                    where b.is_final and b.bar_start >= now() - interval '30 minutes'
                      and b.bar_start < now() - interval '2 minutes'
                ), agg as (
                    select t.symbol, date_trunc('minute', t.event_time) as bar_start, count(*) as n,
                           sum(t.size) as volume, max(t.price) as high, min(t.price) as low
                    from raw.ticks t
                    where t.event_time >= now() - interval '31 minutes'
                    group by 1, 2
                )
                select count(*), count(*) filter (
                    where a.symbol is null or a.n <> c.trade_count or abs(a.volume - c.volume) > 1e-6
                       or abs(a.high - c.high) > 1e-9 or abs(a.low - c.low) > 1e-9)
                from closed c left join agg a using (symbol, bar_start)
                """
            )
            bars_checked, bars_differing = cur.fetchone()
    finally:
        conn.close()
    written = sum(end.get(p, f) - f for p, f in start.items())
    return Accounting(
        written=written,
        landed_once=sum(1 for n in seen.values() if n == 1),
        dead_lettered=dead_total,
        duplicates_of_landed=duplicates,
        landed_twice=sum(1 for n in seen.values() if n > 1),
        lost=len(missing) - duplicates,
        bars_checked=bars_checked,
        bars_differing=bars_differing,
    )


def run(
    console: Console, holds: dict[str, float] | None = None, only: list[str] | None = None
) -> tuple[list[FaultReport], Accounting]:
    from devstack.demo import DemoPlan, processes, stream_processes

    plan = DemoPlan.current()
    procs = processes(plan)
    if not (all(p.running() for p in stream_processes(plan)) and procs["ticks"].running()):
        raise SystemExit("chaos needs the demo running: `make demo` first")
    start = _ticks_offsets()
    reports = [inject_and_recover(f, console) for f in faults(holds) if only is None or f.name in only]
    console.print("pausing ingest until the stream has drained the ticks topic")
    procs["ticks"].stop()
    end = _ticks_offsets()
    wait_until(lambda: _lag_below(1), 600, interval_s=2.0)
    accounting = account(start, end)
    procs["ticks"].start()
    _print(console, reports, accounting)
    return reports, accounting


def _print(console: Console, reports: list[FaultReport], acc: Accounting) -> None:
    table = Table(title="chaos: faults")
    for col in (
        "fault",
        "expected alert",
        "pending after (s)",
        "fired after (s)",
        "cleared",
        "back after (s)",
        "by",
        "caught up (s)",
    ):
        table.add_column(col)
    for r in reports:
        table.add_row(
            r.name,
            r.expected_alert,
            "-" if r.alert_pending_after_s is None else f"{r.alert_pending_after_s:.0f}",
            "-" if r.alert_after_s is None else f"{r.alert_after_s:.0f}",
            str(r.alert_cleared),
            f"{r.back_after_s:.0f}",
            r.repaired_by,
            "-" if r.caught_up_after_s is None else f"{r.caught_up_after_s:.0f}",
        )
    console.print(table)
    console.print(acc)
