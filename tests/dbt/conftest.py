"""Fixtures for the dbt project: a database of its own, generated data, real `dbt build` runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from common.db import connect
from common.migrate import recreate_database
from common.settings import PostgresSettings
from dbt_project import sample_data
from dbt_project.runner import DbtResult, run_dbt

TEST_DATABASE = "market_dbt_test"
HISTORY_DAYS = 320
DAILY_SYMBOLS = ("DBTA", "DBTB", "DBTC")
GAPPY_SYMBOL = "DBTGAP"
INTRADAY_SYMBOL = "DBTINTRA"
STREAM_SYMBOL = "DBTRT"


@dataclass
class DbtDatabase:
    name: str
    settings: PostgresSettings
    target: Path
    days: list[date]

    def dbt(self, *args: str) -> DbtResult:
        return run_dbt(list(args), database=self.name, target_path=self.target)

    def connect(self, role: str = "admin") -> psycopg2.extensions.connection:
        return connect(role, self.settings)

    def query(self, statement: str, params: tuple = ()) -> list[tuple]:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall()
        finally:
            conn.close()

    def run_results(self) -> list[dict]:
        return json.loads((self.target / "run_results.json").read_text())["results"]


def load_scenario(db: DbtDatabase) -> None:
    """Daily bars for several symbols (one with gaps), a day of 5-minute bars, a few stream minutes."""
    series = [sample_data.daily_series(s, db.days, seed=i) for i, s in enumerate(DAILY_SYMBOLS)]
    series.append(sample_data.with_gaps(sample_data.daily_series(GAPPY_SYMBOL, db.days, seed=77), 6, seed=5))
    writer = db.connect("writer")
    try:
        sample_data.load_daily_bars(writer, series)
        intraday = sample_data.intraday_bars(INTRADAY_SYMBOL, db.days[-1], 5, 78, seed=3)
        sample_data.load_raw_bar_rows(writer, intraday)
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
        sample_data.load_rt_minutes(writer, STREAM_SYMBOL, start, 3, seed=4, signal_every=2)
    finally:
        writer.close()


@pytest.fixture(scope="session")
def dbt_db(stack, tmp_path_factory) -> Iterator[DbtDatabase]:
    """market_dbt_test, freshly migrated and loaded, after one `dbt build` from empty."""
    settings = recreate_database(TEST_DATABASE)
    days = sample_data.trading_days(date.today() - timedelta(days=1), HISTORY_DAYS)
    db = DbtDatabase(TEST_DATABASE, settings, tmp_path_factory.mktemp("dbt-target"), days)
    load_scenario(db)
    db.first_build = db.dbt("build")
    db.first_results = db.run_results()
    yield db
