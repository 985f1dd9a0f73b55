"""What market_ingest's tasks do: decide from the exchange's calendar (exchange_calendars) whether a run
is an intraday fetch (market open) or the daily backfill (after the session's close), and run the
project's ingest CLI for it. Offline (AF_INGEST_OFFLINE, the default here: no Yahoo), the daily task
replays the demo's recorded daily history (devstack/demo.py writes it) through the same ingest path,
and the intraday one has nothing to fetch (the synthetic source streams ticks).

The daily task then waits until the stream has landed the bars in raw.bars, so that the asset event
it emits (orchestration.assets.DAILY_BARS, which schedules dbt_daily) means "the bars are there".
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import pandas as pd

from common.db import connect
from common.settings import PROJECT_ROOT, stack_settings
from orchestration.settings import AirflowSettings, airflow_settings

log = logging.getLogger(__name__)

INTRADAY, DAILY, NOTHING = "intraday_fetch", "daily_backfill", "nothing"


class IngestFailed(RuntimeError):
    pass


@lru_cache(maxsize=2)
def _calendar(code: str):
    import exchange_calendars as xc

    return xc.get_calendar(code)


def plan(at: datetime, s: AirflowSettings | None = None) -> tuple[str, date | None]:
    """What a run at `at` (UTC) should do: intraday while the market is open, the daily backfill of
    the day's session once it closed (until the next session opens), else nothing."""
    s = s or airflow_settings()
    cal = _calendar(s.exchange)
    ts = pd.Timestamp(at)
    ts = ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")
    if cal.is_open_on_minute(ts):
        return INTRADAY, ts.tz_convert(cal.tz).date()
    today = pd.Timestamp(ts.tz_convert(cal.tz).date())
    if cal.is_session(today) and ts >= cal.session_close(today):
        return DAILY, today.date()
    return NOTHING, None


def plan_run(at: datetime, asked: str = "auto", s: AirflowSettings | None = None) -> tuple[str, date | None]:
    """plan(), unless the run was triggered with params.run set to a task: then that task, for the
    latest session that closed (daily) or today."""
    if asked == "auto":
        return plan(at, s)
    s = s or airflow_settings()
    cal = _calendar(s.exchange)
    ts = pd.Timestamp(at)
    ts = ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")
    if asked == DAILY:
        return DAILY, cal.minute_to_past_session(ts).date() if not cal.is_open_on_minute(ts) else (
            cal.previous_session(cal.minute_to_session(ts)).date()
        )
    return asked, ts.date()


def _run(args: list[str], timeout_s: float = 900) -> str:
    cmd = [sys.executable, "-m", "ingest", *args]
    log.info("event=ingest_run cmd=%s", " ".join(args))
    proc = subprocess.run(
        cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise IngestFailed(f"ingest {args[0]} failed (exit {proc.returncode}): {tail}")
    return (
        (proc.stdout + proc.stderr).strip().splitlines()[-1:][0]
        if (proc.stdout + proc.stderr).strip()
        else ""
    )


def recorded_history() -> tuple[str, list[str]]:
    """The demo's recorded daily history (written once, as `make demo` does), and its symbols."""
    from devstack.demo import DemoPlan, write_history

    home = stack_settings().state_dir / "demo"
    home.mkdir(parents=True, exist_ok=True)
    plan_ = DemoPlan.current()
    if plan_.source != "synthetic":  # recorded prices under real symbols' names would be false data
        plan_ = DemoPlan()
    bars, instruments = home / "daily_bars.csv", home / "instruments.csv"
    if not bars.exists() or not instruments.exists():
        bars, instruments = write_history(plan_, home)
    return str(bars), [str(instruments), *plan_.symbol_names()]


def wait_landed(symbols: list[str], day: date, timeout_s: float) -> int:
    """Wait until raw.bars holds a daily bar of `day` for every symbol; returns how many landed."""
    deadline = time.monotonic() + timeout_s
    start = datetime.combine(day - timedelta(days=1), datetime.min.time(), UTC)
    landed = 0
    while True:
        conn = connect("reader")
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "select count(distinct symbol) from raw.bars where interval = '1d'"
                    " and symbol = any(%s) and bar_start >= %s",
                    (symbols, start),
                )
                landed = cur.fetchone()[0]
        finally:
            conn.close()
        if landed >= len(symbols) or time.monotonic() > deadline:
            return landed
        time.sleep(2.0)


def daily_backfill(day: date, s: AirflowSettings | None = None, land_timeout_s: float = 600) -> dict:
    s = s or airflow_settings()
    if s.ingest_offline:
        bars, (instruments, *symbols) = recorded_history()
        summary = _run(
            ["replay", bars, "--kind", "bars", "--symbols-file", instruments, "--metrics-port", "0"]
        )
    else:
        symbols = [x.strip() for x in s.ingest_symbols.split(",") if x.strip()]
        nxt = day + timedelta(days=1)
        summary = _run(
            [
                "backfill",
                "--symbols",
                ",".join(symbols),
                "--interval",
                "1d",
                "--start",
                str(day),
                "--end",
                str(nxt),
            ]
        )
    landed = wait_landed(symbols, _latest_session(day, s), land_timeout_s)
    if landed < len(symbols):
        raise IngestFailed(
            f"daily bars of {day} were published but only {landed}/{len(symbols)} symbols landed in raw.bars "
            f"within {land_timeout_s:.0f} s: is the streaming job running (stream_supervisor)?"
        )
    return {"day": str(day), "symbols": len(symbols), "landed": landed, "ingest": summary}


def _latest_session(day: date, s: AirflowSettings) -> date:
    cal = _calendar(s.exchange)
    ts = pd.Timestamp(day)
    return day if cal.is_session(ts) else cal.date_to_session(ts, direction="previous").date()


def intraday_fetch(s: AirflowSettings | None = None) -> dict:
    s = s or airflow_settings()
    if s.ingest_offline:
        log.info("event=intraday_fetch offline=true detail='the synthetic source streams ticks'")
        return {"offline": True}
    symbols = ",".join(x.strip() for x in s.ingest_symbols.split(",") if x.strip())
    today = datetime.now(UTC).date()
    summary = _run(["backfill", "--symbols", symbols, "--interval", "5m", "--start", str(today)])
    return {"symbols": symbols, "ingest": summary}
