"""The stream's staging models read every row the real sink wrote since their last run (issue 14).

stg_rt__bars_1m and stg_rt__indicators_1m read rt.bars_1m / rt.indicators_1m by updated_at and by a
bar_start bound from the sink's ledger (stream_written_since_last_run, macros/watermark.sql; V024),
since no index on updated_at is kept. The bars here are three hours old, as when the stream drains a
backlog: a bound taken from the wall clock (the watermark less the idle-close time) would miss them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from common.migrate import drop_database, recreate_database
from dbt_project.runner import run_dbt
from spark_streaming import indicators as ind
from spark_streaming.sink import BatchFrames, PostgresSink
from tests.spark_streaming.helpers import query

pytestmark = pytest.mark.slow

DATABASE = "market_dbt_stream_test"
MODELS = ("stg_rt__bars_1m", "stg_rt__indicators_1m")
LATENESS_MS = 5_000


def _frames(ticks: list[tuple[str, int]], offset0: int) -> BatchFrames:
    symbols, times = zip(*ticks, strict=True)
    n = len(ticks)
    frame = pd.DataFrame(
        {
            "symbol": list(symbols),
            "event_time_ms": np.array(times, dtype=np.int64),
            "price": 100.0 + np.arange(n),
            "size": np.full(n, 10.0),
            "bid": np.nan,
            "ask": np.nan,
            "day_volume": np.nan,
            "currency": None,
            "exchange": None,
            "source": "test",
            "ingest_time_ms": np.int64(max(times)),
            "kafka_partition": 0,
            "kafka_offset": offset0 + np.arange(n),
            "kafka_topic": "test",
            "kafka_ms": np.array(times, dtype=np.int64),
            "key": None,
            "value": None,
        }
    )
    return BatchFrames(ticks=frame, bars=pd.DataFrame(), dead=pd.DataFrame(), input_rows=n)


@pytest.fixture(scope="module")
def stream_db(stack, tmp_path_factory) -> Iterator[tuple]:
    settings = recreate_database(DATABASE)
    yield settings, tmp_path_factory.mktemp("dbt-stream-target")
    drop_database(settings)


def _run_staging(target) -> None:
    result = run_dbt(["run", "--select", *MODELS], database=DATABASE, target_path=target)
    assert result.ok, result.stdout[-3000:]


def _differences(settings) -> list[tuple]:
    """Rows of the stream's tables that staging lacks or holds in another version (both tables)."""
    return query(
        settings,
        "(select 'bars', symbol, bar_start, trade_count, volume, is_final, updated_at from rt.bars_1m"
        " except select 'bars', symbol, bar_start, trade_count, volume, is_final, updated_at"
        " from staging.stg_rt__bars_1m)"
        " union all"
        " (select 'indicators', symbol, bar_start, null::integer, close, is_final, updated_at"
        " from rt.indicators_1m"
        " except select 'indicators', symbol, bar_start, null::integer, close, is_final, updated_at"
        " from staging.stg_rt__indicators_1m)",
    )


def test_incremental_staging_picks_up_a_late_revision_of_an_older_bar_the_sink_wrote(stream_db):
    settings, target = stream_db
    query_id = f"test-stream-staging-{uuid.uuid4()}"
    sink = PostgresSink(
        settings, "test_stream_staging", lambda: query_id, LATENESS_MS, 120_000, ind.SignalThresholds()
    )
    minute = (int((datetime.now(UTC) - timedelta(hours=3)).timestamp()) // 60) * 60_000
    batches = [
        [("SA", minute + 10_000), ("SB", minute + 20_000)],  # both bars of `minute` open
        [("SA", minute + 61_000), ("SB", minute + 61_000)],  # the next minute opens; `minute` still open
        # SA: a tick 3 s behind its newest event (within the allowed lateness) revises the older bar;
        # SB revises only the newer one, so the batch's earliest bar is SA's older one
        [("SA", minute + 58_000), ("SB", minute + 62_000)],
        [("SA", minute + 130_000), ("SB", minute + 130_000)],  # both older bars close
    ]
    try:
        for b, ticks in enumerate(batches):
            outcome = sink.write(b, _frames(ticks, offset0=10 * b))
            assert outcome.fresh_ticks == len(ticks) and outcome.late == 0, b
            _run_staging(target)  # the first run loads everything, the later ones are incremental
            assert _differences(settings) == [], f"after batch {b}"
    finally:
        sink.close()
    revised = query(
        settings,
        "select trade_count, is_final from staging.stg_rt__bars_1m where symbol = 'SA' and bar_start = %s",
        (datetime.fromtimestamp(minute / 1000, UTC),),
    )
    assert revised == [(2, True)]  # the late tick's revision, then the close
    assert query(settings, "select count(*) from staging.stg_rt__bars_1m") == [(6,)]
    # the later runs took the bounded incremental read, not a full load
    compiled = target / "compiled" / "marketpipe" / "models" / "staging" / "rt" / "stg_rt__bars_1m.sql"
    assert "stream_ledger" in compiled.read_text()


def test_the_rt_source_tests_bounded_by_the_ledger_still_see_rows_landed_late(stream_db):
    # runs after the test above: rt.bars_1m holds six bars three hours old, written by the sink
    # within the last minutes. recency_within and landing_latency_within read rt.bars_1m by
    # updated_at, bounded by bar_start from the ledger ('stream_landed_within' in _rt__sources.yml):
    # the bars are young by landing time and every one of them landed three hours after its minute
    settings, target = stream_db
    assert query(
        settings, "select count(*) from rt.bars_1m where bar_start < now() - interval '2 hours'"
    ) == [(6,)]
    result = run_dbt(["test", "--select", "source:rt.bars_1m"], database=DATABASE, target_path=target)
    assert result.returncode in (0, 1), result.stdout[-3000:]
    results = json.loads((target / "run_results.json").read_text())["results"]
    results = [r for r in results if r["unique_id"].startswith("test.")]
    outcome = {r["unique_id"].split(".")[2]: (r["status"], r["failures"]) for r in results}
    assert outcome == {
        "source_recency_within_rt_bars_1m_updated_at__15_minutes": ("pass", 0),
        "source_landing_latency_within_rt_bars_1m_bar_start__updated_at__5_minutes": ("warn", 6),
    }
    assert all("stream_ledger" in r["compiled_code"] for r in results)
