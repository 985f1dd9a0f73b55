"""The offline demo: the whole pipeline on generated data, on the local stack.

1. daily history for the demo symbols is written to a CSV and replayed through ingest -> Kafka;
2. the Spark streaming job lands it and the live synthetic ticks into PostgreSQL;
3. the synthetic source keeps producing ticks in the background;
4. once bars and indicators arrive, `dbt build` builds the marts and the quality score;
5. a summary of what landed where, and how to look at it.

Background processes (ingest, streaming) have pid files and logs in .state/demo/ and keep running
until `make demo-stop`. With STREAM_SHARDS=N the streaming job is N processes, shard i in
.state/demo/stream-s<i>of<N>/ (the stream_supervisor DAG's own, orchestration/stream_supervisor.py).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psycopg2 import errors
from rich.console import Console
from rich.table import Table

from common.db import transaction
from common.settings import PROJECT_ROOT, prometheus_settings, stack_settings
from devstack.errors import StackError
from devstack.process import PidFileProcess, spawn, tail, wait_until
from devstack.prometheus import http_ok

log = logging.getLogger(__name__)
_STARTED = time.time()  # this command's start, when the Makefile did not say when `make demo` began

SUMMARY_TABLES = (
    "raw.ticks",
    "raw.bars",
    "raw.dead_letters",
    "rt.bars_1m",
    "rt.indicators_1m",
    "rt.signals",
    "marts.fct_daily_prices",
    "marts.fct_ma_crosses",
)


def _configured_shards() -> int:
    """Shard processes of the streaming job: AF_STREAM_SHARDS, by default STREAM_SHARDS (1)."""
    from orchestration.settings import airflow_settings

    return airflow_settings().stream_shards


@dataclass(frozen=True)
class DemoPlan:
    symbols: int = 20
    history_days: int = 320
    tick_rate: float = 1_000.0
    seed: int = 7
    source: str = "synthetic"  # or "yahoo": live quotes and daily history from Yahoo Finance
    yahoo_symbols: str = "BTC-USD,ETH-USD,AAPL,MSFT,SPY"  # crypto trades around the clock
    # the streaming job's shard processes; saved, so demo-stop stops what demo started
    stream_shards: int = field(default_factory=_configured_shards)

    def symbol_names(self) -> list[str]:
        """The demo's symbols: the synthetic source's names (history and ticks share them), or Yahoo's."""
        from ingest.sources.synthetic import symbol_names

        if self.source == "yahoo":
            return self.yahoo_symbols.split(",")
        return symbol_names(self.symbols)

    def save(self) -> None:
        """Remembered for the commands that act on the running demo (status, chaos, demo-stop, the
        ingest DAG's recorded history), so they restart or read what `make demo` started."""
        (_home() / "plan.json").write_text(json.dumps(asdict(self)))

    @classmethod
    def current(cls) -> DemoPlan:
        """The plan of the last `make demo`, or the default one."""
        saved = _home() / "plan.json"
        return cls(**json.loads(saved.read_text())) if saved.exists() else cls()


def _home() -> Path:
    home = stack_settings().state_dir / "demo"
    home.mkdir(parents=True, exist_ok=True)
    return home


def _python() -> str:
    return sys.executable


def write_history(plan: DemoPlan, home: Path) -> tuple[Path, Path]:
    """Daily bars for the demo symbols (NYSE sessions up to today) and an instruments file for them."""
    from dbt_project.sample_data import EXCHANGE_TZ, daily_series, session_start_utc, trading_days

    # the exchange's today: between midnight UTC and midnight New York, UTC's date is a day ahead and
    # its session's bar (stamped at midnight exchange time) would lie in the future: future_time
    days = trading_days(datetime.now(EXCHANGE_TZ).date(), plan.history_days)
    bars = home / "daily_bars.csv"
    with bars.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["symbol", "interval", "event_time_ms", "open", "high", "low", "close", "volume"])
        for i, symbol in enumerate(plan.symbol_names()):
            s = daily_series(symbol, days, seed=plan.seed + i, start_price=50.0 + 10 * i)
            for k, day in enumerate(s.days):
                start_ms = int(session_start_utc(day).timestamp() * 1000)
                out.writerow(
                    [
                        symbol,
                        "1d",
                        start_ms,
                        round(s.open[k], 2),
                        round(s.high[k], 2),
                        round(s.low[k], 2),
                        round(s.close[k], 2),
                        int(s.volume[k]),
                    ]
                )
    instruments = home / "instruments.csv"
    with instruments.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["symbol", "asset_class", "calendar", "tick_size", "currency"])
        for symbol in plan.symbol_names():
            out.writerow([symbol, "equity", "24/7", "0.01", "USD"])
    return bars, instruments


@dataclass
class Background(PidFileProcess):
    """A pipeline process of the demo (`python <args>`), in the background with a pid file and log."""

    name: str
    args: list[str]
    state_dir: Path = field(default_factory=_home)
    stop_timeout_s: float = 60.0
    probe_url: str = ""  # answers 200 while the process is healthy: its /metrics, the dashboard's health

    @property
    def address(self) -> str:
        return self.probe_url.removeprefix("http://").split("/")[0] if self.probe_url else "-"

    def healthy(self) -> bool:
        return self.running() and (not self.probe_url or http_ok(self.probe_url))

    def start(self) -> bool:
        if self.running():
            return False
        self.home.mkdir(parents=True, exist_ok=True)
        spawn([_python(), *self.args], self.log_file, self.pid_file, env={"PYTHONPATH": str(PROJECT_ROOT)})
        return True


def processes(plan: DemoPlan) -> dict[str, Background]:
    """The demo's background processes by name: the streaming job's shards (`stream`, or `stream-s0of2`,
    `stream-s1of2`, ...), then ingest's synthetic feed (`ticks`) and the dashboard."""
    from dashboard.settings import dashboard_settings
    from ingest.settings import ingest_settings

    ingest, board = ingest_settings(), dashboard_settings()
    return {
        **{p.name: p for p in stream_processes(plan)},
        "ticks": Background(
            "ticks",
            _ticks_args(plan),  # metrics on INGEST_METRICS_PORT
            probe_url=f"http://{ingest.metrics_host}:{ingest.metrics_port}/metrics",
        ),
        # the Streamlit dashboard (dashboard/), as market_reader, on DASHBOARD_HOST:DASHBOARD_PORT
        "dashboard": Background(
            "dashboard",
            ["-m", "dashboard"],
            stop_timeout_s=20.0,
            probe_url=f"http://{board.host}:{board.port}/_stcore/health",
        ),
    }


def stream_processes(plan: DemoPlan) -> list[Background]:
    """The streaming job's processes, one per shard (the same commands and pid files as the
    stream_supervisor DAG's: orchestration/stream_supervisor.py), each probed on its metrics port."""
    from orchestration.settings import airflow_settings
    from orchestration.stream_supervisor import shards, stream_process
    from spark_streaming.settings import StreamingSettings

    settings = airflow_settings().model_copy(update={"stream_shards": plan.stream_shards})
    host = StreamingSettings().metrics_host
    return [
        replace(stream_process(settings, shard), probe_url=f"http://{host}:{shard.metrics_port}/metrics")
        for shard in shards(settings)
    ]


def _ticks_args(plan: DemoPlan) -> list[str]:
    if plan.source == "yahoo":
        return ["-m", "ingest", "stream", "--symbols", plan.yahoo_symbols]
    synthetic = ["--rate", str(plan.tick_rate), "--symbols", str(plan.symbols), "--seed", str(plan.seed)]
    return ["-m", "ingest", "synthetic", *synthetic]


def pipeline_processes() -> dict[str, Background]:
    """The demo's processes as `make status` lists them: ingest, each shard of the stream, the dashboard."""
    plan = DemoPlan.current()
    procs = processes(plan)
    streams = {p.name: p for p in stream_processes(plan)}
    return {"ingest": procs["ticks"], **streams, "dashboard": procs["dashboard"]}


def _count(table: str) -> int | None:
    try:
        with transaction("reader") as cur:
            cur.execute(f"select count(*) from {table}")
            return cur.fetchone()[0]
    except errors.UndefinedTable:  # a mart that dbt has not built yet
        return None


def _count_for(table: str, symbols: list[str], condition: str) -> int:
    """Rows of the demo's own symbols (the shared database may hold other data too)."""
    with transaction("reader") as cur:
        cur.execute(f"select count(*) from {table} where symbol = any(%s) and {condition}", (symbols,))
        return cur.fetchone()[0]


def _quality_score() -> str:
    try:
        with transaction("reader") as cur:
            cur.execute("select score from quality.run_scores order by run_started_at desc limit 1")
            row = cur.fetchone()
    except errors.UndefinedTable:
        return "not built yet"
    return f"{row[0]:.1f} / 100" if row else "no dbt run yet"


def run(plan: DemoPlan, console: Console, wait_s: float = 240.0) -> None:
    home = _home()
    plan.save()
    procs = processes(plan)
    streams = stream_processes(plan)
    shards = f", {len(streams)} shards" if len(streams) > 1 else ""
    with console.status(f"starting the streaming job (Spark{shards})..."):
        for stream in streams:
            stream.start()
    symbols = plan.symbol_names()
    if plan.source == "yahoo":
        history = _yahoo_history(plan, console)
    else:
        history = _replay_history(plan, home, console)
    procs["ticks"].start()
    what = (
        f"live Yahoo quotes of {plan.yahoo_symbols}"
        if plan.source == "yahoo"
        else f"synthetic ticks: {plan.tick_rate:,.0f}/s over {plan.symbols} symbols"
    )
    console.print(f"{what} (log {procs['ticks'].log_file})")

    with console.status("waiting for the streaming job to land history, bars and indicators..."):
        landed = wait_until(
            lambda: (
                _count_for("raw.bars", symbols, "interval = '1d'") >= history
                and _count_for("rt.indicators_1m", symbols, "bar_start > now() - interval '10 minutes'") > 0
            ),
            wait_s,
            interval_s=2.0,
        )
    if not landed:
        logs = "; ".join(f"{s.log_file}: {tail(s.log_file, 3)}" for s in streams)
        raise StackError(f"the streaming job did not land the demo data within {wait_s:.0f} s; see {logs}")
    console.print("building the dbt project (staging, marts, quality score)")
    build = subprocess.run([_python(), "-m", "dbt_project", "build"], cwd=PROJECT_ROOT)
    if build.returncode != 0:
        console.print("[yellow]dbt build reported failures: see the quality score and dbt_project/logs[/]")
    summary(console)
    procs["dashboard"].start()
    console.print(f"dashboard: {dashboard_url()}  (log {procs['dashboard'].log_file})")
    _report_live(procs["dashboard"], symbols[0], console)


def _ingest(args: list[str], what: str) -> None:
    done = subprocess.run([_python(), "-m", "ingest", *args, "--metrics-port", "0"], cwd=PROJECT_ROOT)
    if done.returncode != 0:
        raise StackError(f"{what} failed (exit {done.returncode}); its log is above")


def _replay_history(plan: DemoPlan, home: Path, console: Console) -> int:
    """The recorded daily history through ingest -> Kafka; the number of bars the stream must land."""
    bars, instruments = write_history(plan, home)
    console.print(
        f"replaying {plan.history_days} days of daily bars for {plan.symbols} symbols through Kafka"
    )
    _ingest(["replay", str(bars), "--kind", "bars", "--symbols-file", str(instruments)], "replaying history")
    return plan.symbols * plan.history_days


def _yahoo_history(plan: DemoPlan, console: Console) -> int:
    """Daily bars from Yahoo (yfinance) through ingest -> Kafka; at least one bar per symbol must land."""
    start = datetime.now(UTC).date() - timedelta(days=round(plan.history_days * 365 / 252))
    console.print(f"backfilling daily bars of {plan.yahoo_symbols} since {start} from Yahoo Finance")
    try:
        _ingest(
            ["backfill", "--symbols", plan.yahoo_symbols, "--interval", "1d", "--start", str(start)],
            "the Yahoo backfill",
        )
    except StackError as exc:
        raise StackError(
            f"{exc}. Is Yahoo Finance reachable from here? `make demo` without SOURCE runs offline."
        ) from None
    return len(plan.symbol_names())


def _report_live(dashboard: Background, symbol: str, console: Console, wait_s: float = 120.0) -> None:
    """How long after `make demo` started (MP_DEMO_STARTED, set by the Makefile; else this command)
    the dashboard answers and market_reader, as the live header does, reads a tick under 5 s old."""
    from common.db import fetch_all

    def live() -> bool:
        if not dashboard.healthy():
            return False
        [(age_s,)] = fetch_all(
            "select extract(epoch from now() - max(event_time)) from raw.ticks"
            " where symbol = %s and event_time > now() - interval '1 minute'",
            (symbol,),
            role="reader",
        )
        return age_s is not None and age_s < 5

    if wait_until(live, wait_s, interval_s=0.5):
        since = float(os.environ.get("MP_DEMO_STARTED", _STARTED))
        console.print(f"live ticks on the dashboard {time.time() - since:.0f} s after the demo started")
    else:
        console.print(f"[yellow]the dashboard shows no live tick of {symbol} yet: see its log[/]")


def dashboard_url() -> str:
    from dashboard.settings import dashboard_settings

    settings = dashboard_settings()
    return f"http://{settings.host}:{settings.port}"


def summary(console: Console) -> None:
    table = Table(title=f"pipeline at {datetime.now(UTC):%H:%M:%S} UTC")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name in SUMMARY_TABLES:
        count = _count(name)
        table.add_row(name, "-" if count is None else f"{count:,}")
    console.print(table)
    console.print(f"data-quality score (last dbt build): {_quality_score()}")
    from ingest.settings import ingest_settings

    ports = ", :".join(s.address.rpartition(":")[2] for s in stream_processes(DemoPlan.current()))
    console.print(
        f"Prometheus: {prometheus_settings().url}  (ingest metrics :{ingest_settings().metrics_port}, "
        f"stream metrics :{ports})"
    )
    console.print("dbt docs: make docs   ·   stop the demo's ingest and stream: make demo-stop")


def stop(plan: DemoPlan) -> list[str]:
    return [name for name, proc in processes(plan).items() if proc.stop()]
