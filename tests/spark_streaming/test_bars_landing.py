"""Daily bars through the running job (real Kafka, Spark, PostgreSQL), then dbt's daily run on them.

Contract Bar messages (common.contract.encode, key = symbol) for two symbols go to a private bars topic;
the job lands them in raw.bars of a private database, one row per (symbol, interval, bar_start) with the
values sent; a corrected re-send (newer ingest time) replaces its bar, a stale one (older) does not.
Then `dbt build --selector daily` on that database carries the closes to marts.fct_daily_prices.
"""

from __future__ import annotations

import time
import uuid
from datetime import date, timedelta

import pytest

from common.contract import Bar, BarInterval, Source, Topic, encode
from common.migrate import drop_database
from dbt_project import sample_data
from dbt_project.runner import run_dbt
from spark_streaming.feed import delete_topics
from tests.spark_streaming.helpers import (
    JobProcess,
    private_database,
    private_topics,
    produce,
    query,
    wait_for,
)

pytestmark = pytest.mark.slow

N_DAYS = 6


def _bar(symbol: str, day: date, close: float, ingest_ms: int) -> Bar:
    start_ms = int(sample_data.session_start_utc(day).timestamp() * 1000)
    return Bar(
        symbol=symbol,
        interval=BarInterval.D1,
        event_time_ms=start_ms,
        open=round(close - 0.5, 4),
        high=round(close + 1.25, 4),
        low=round(close - 1.5, 4),
        close=close,
        volume=1000.0 + close,
        source=Source.REPLAY,
        ingest_time_ms=ingest_ms,
    )


def _send(bootstrap: str, topic: str, bars: list[Bar]) -> None:
    produce(bootstrap, topic, [(b.symbol, encode(b)) for b in bars])


def _landed(pg) -> dict[tuple[str, date], tuple]:
    rows = query(
        pg,
        "select symbol, (bar_start at time zone 'America/New_York')::date, interval, open, high, low, close,"
        " volume, source, (extract(epoch from ingest_time) * 1000)::bigint from raw.bars",
    )
    return {(r[0], r[1]): r[2:] for r in rows}


def _expected(b: Bar) -> tuple:
    return ("1d", b.open, b.high, b.low, b.close, b.volume, "replay", b.ingest_time_ms)


def test_daily_bars_land_once_per_key_and_reach_the_daily_marts(bootstrap_servers, tmp_path):
    tag = uuid.uuid4().hex[:6].upper()
    symbols = [f"BA{tag}", f"BB{tag}"]
    days = sample_data.trading_days(date.today() - timedelta(days=1), N_DAYS)
    now = int(time.time() * 1000)
    sent = {
        (s, d): _bar(s, d, round(50.0 + 10 * k + i * 0.75, 4), now - 60_000)
        for k, s in enumerate(symbols)
        for i, d in enumerate(days)
    }
    topics = private_topics(bootstrap_servers, tag.lower())
    pg = private_database(f"test_stream_bars_{tag.lower()}")
    job = JobProcess(tmp_path, topics, pg)
    try:
        _send(bootstrap_servers, topics[Topic.BARS], list(sent.values()))
        job.start()

        def consumed() -> int:
            return query(pg, "select coalesce(sum(input_rows), 0) from rt.stream_ledger")[0][0]

        try:
            wait_for(lambda: consumed() >= len(sent), 240, "the job to consume the bars")
        except AssertionError:
            raise AssertionError(job.log_tail()) from None
        assert consumed() == len(sent)
        assert _landed(pg) == {k: _expected(b) for k, b in sent.items()}

        # a correction of one bar (newer ingest time) and a stale copy of another (older ingest time)
        fixed_key, stale_key = (symbols[0], days[-2]), (symbols[1], days[-3])
        fixed = _bar(*fixed_key, close=sent[fixed_key].close + 3.0, ingest_ms=now)
        stale = _bar(*stale_key, close=sent[stale_key].close - 3.0, ingest_ms=now - 120_000)
        _send(bootstrap_servers, topics[Topic.BARS], [fixed, stale])
        wait_for(lambda: consumed() >= len(sent) + 2, 120, "the job to consume the re-sent bars")
        assert job.alive()
        expected = {k: _expected(b) for k, b in sent.items()} | {fixed_key: _expected(fixed)}
        assert _landed(pg) == expected
        assert query(pg, "select count(*) from raw.bars")[0][0] == len(sent)
    finally:
        job.stop()
        delete_topics(bootstrap_servers, topics.values())

    try:
        # the daily selector leaves seeds out (a deployment seeds once): a fresh database is seeded first
        seeded = run_dbt(["seed"], database=pg.database, target_path=tmp_path / "dbt-target")
        assert seeded.ok, seeded.stdout[-3000:]
        result = run_dbt(
            ["build", "--selector", "daily", "--exclude-resource-type", "unit_test"],
            database=pg.database,
            target_path=tmp_path / "dbt-target",
        )
        assert result.ok, result.stdout[-3000:]
        closes = {
            (s, d): c
            for s, d, c in query(
                pg,
                "select symbol, trade_date, close from marts.fct_daily_prices where symbol = any(%s)",
                (symbols,),
            )
        }
        assert closes == {k: v[4] for k, v in expected.items()}
        staged = query(pg, "select count(*) from staging.stg_raw__bars where symbol = any(%s)", (symbols,))[
            0
        ][0]
        assert staged == len(sent)
    finally:
        drop_database(pg)
