"""A small seeded database for the dashboard, built once per session with a real `dbt build`.

Three symbols x 300 NYSE days of daily bars, 40 stream minutes of DASHA ending now (the last bar
still forming) with signals, a few ticks, dead letters from both stages, then `dbt build` (a clean,
scored run) and a second, planted run: a negative-volume bar makes staging's tests fail, so the
latest quality score has failing tests to show.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest

from common.db import connect
from common.migrate import recreate_database
from common.settings import PostgresSettings
from dbt_project import sample_data
from dbt_project.runner import run_dbt

TEST_DATABASE = "market_dashboard_test"
SYMBOLS = ("DASHA", "DASHB", "DASHC")
LIVE_SYMBOL = "DASHA"
BAD_SYMBOL = "DASHBAD"
HISTORY_DAYS = 300
LIVE_MINUTES = 40
DEAD_LETTERS = (  # (stage, reason, how many, hours ago)
    ("ingest", "bad_symbol", 3, 5),
    ("stream", "bad_json", 2, 2),
    ("stream", "stale_time", 4, 2),
)


@dataclass
class DashboardDb:
    name: str
    settings: PostgresSettings
    days: list[date]
    tick_price: float
    tick_time: datetime

    def query(self, statement: str, params: tuple | dict = ()) -> list[tuple]:
        conn = connect("admin", self.settings)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall()
        finally:
            conn.close()


def _ticks(conn, symbol: str, now: datetime, last_price: float) -> None:
    rows = [(symbol, now - timedelta(seconds=30 - i), last_price - 0.01 * (3 - i)) for i in range(4)]
    with conn.cursor() as cur:
        cur.execute("select raw.ensure_partitions('raw.ticks', %s, %s)", (rows[0][1], rows[-1][1]))
        cur.executemany(
            "insert into raw.ticks (symbol, event_time, price, size, source, ingest_time)"
            " values (%s, %s, %s, 10, 'test', %s)",
            [(s, t, p, t) for s, t, p in rows],
        )
    conn.commit()


def _dead_letters(conn, now: datetime) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "select raw.ensure_partitions('raw.dead_letters', %s, %s)", (now - timedelta(hours=6), now)
        )
        offset = 0
        for stage, reason, count, hours in DEAD_LETTERS:
            for _ in range(count):
                offset += 1
                cur.execute(
                    "insert into raw.dead_letters (failed_at, kafka_topic, kafka_partition, kafka_offset,"
                    " stage, reason, detail, source, intended_topic, payload)"
                    " values (%s, 'market.deadletter.v1', 0, %s, %s, %s, 'planted by the test', 'test',"
                    " 'market.ticks.v1', '{}')",
                    (now - timedelta(hours=hours, minutes=offset), offset, stage, reason),
                )
    conn.commit()


@pytest.fixture(scope="session")
def dashboard_db(stack, tmp_path_factory) -> Iterator[DashboardDb]:
    settings = recreate_database(TEST_DATABASE)
    days = sample_data.trading_days(date.today() - timedelta(days=1), HISTORY_DAYS)
    series = [sample_data.daily_series(s, days, seed=40 + i) for i, s in enumerate(SYMBOLS)]
    now = datetime.now(UTC)
    live_start = now.replace(second=0, microsecond=0) - timedelta(minutes=LIVE_MINUTES - 1)
    tick_price = round(float(series[0].close[-1]) * 1.01, 2)
    writer = connect("writer", settings)
    try:
        sample_data.load_daily_bars(writer, series)
        sample_data.load_rt_minutes(
            writer,
            LIVE_SYMBOL,
            live_start,
            LIVE_MINUTES,
            seed=9,
            price=float(series[0].close[-1]),
            signal_every=10,
        )
        _ticks(writer, LIVE_SYMBOL, now, tick_price)
        _dead_letters(writer, now)
    finally:
        writer.close()
    target = tmp_path_factory.mktemp("dashboard-dbt-target")
    build = run_dbt(["build"], database=TEST_DATABASE, target_path=target)
    assert build.ok, build.stdout[-3000:]
    # a second, failing run: a negative volume breaks stg_raw__bars' accepted_range test
    writer = connect("writer", settings)
    try:
        bad = sample_data.daily_series(BAD_SYMBOL, days[-3:], seed=5)
        bad.volume[-1] = -1.0
        sample_data.load_daily_bars(writer, [bad])
    finally:
        writer.close()
    run_dbt(["build", "--select", "stg_raw__bars"], database=TEST_DATABASE, target_path=target)
    tick_time = now - timedelta(seconds=27)
    db = DashboardDb(TEST_DATABASE, settings, days, tick_price, tick_time)
    previous = os.environ.get("DASHBOARD_DATABASE")
    os.environ["DASHBOARD_DATABASE"] = TEST_DATABASE
    yield db
    if previous is None:
        os.environ.pop("DASHBOARD_DATABASE", None)
    else:
        os.environ["DASHBOARD_DATABASE"] = previous


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
