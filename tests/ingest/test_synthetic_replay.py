"""Synthetic and replay sources: determinism, rates, file formats, and their path into Kafka."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from common.contract import Source, Topic
from ingest.errors import ReplayFileError
from ingest.instruments import Instrument, Instruments
from ingest.service import build_pipeline, produce_synthetic, run_records
from ingest.sources.replay import ReplaySource
from ingest.sources.synthetic import SyntheticSource, ticks, volume_curve

START = 1_750_000_000_000


def test_synthetic_same_seed_gives_identical_records_and_other_seed_differs():
    def take(seed):
        return [
            r.value
            for r in SyntheticSource(7, rate=100, seed=seed, count=500, paced=False, start_ms=START).records()
        ]

    assert take(1) == take(1)
    assert take(1) != take(2)


def test_synthetic_event_times_strictly_increase_per_symbol_and_prices_stay_positive():
    seen: dict[str, int] = {}
    for r in SyntheticSource(20, rate=50_000, seed=3, count=20_000, paced=False).records():
        v = r.value
        assert v["price"] > 0 and v["size"] >= 1
        assert v["event_time_ms"] > seen.get(v["symbol"], -1)
        seen[v["symbol"]] = v["event_time_ms"]
    assert len(seen) == 20


def test_synthetic_log_returns_match_the_configured_volatility():
    src = SyntheticSource(1, rate=1, seed=11, count=20_000, paced=False, start_ms=START)  # 1 tick/s
    prices = np.array([r.value["price"] for r in src.records()])
    returns = np.diff(np.log(prices))
    jumpless = returns[np.abs(returns) < 5 * returns.std()]
    annual = jumpless.std() * np.sqrt(252 * 6.5 * 3600)
    assert 0.15 * 0.9 < annual < 0.60 * 1.1  # seeded per-symbol vol is drawn from [0.15, 0.60]


def test_volume_curve_is_u_shaped_over_the_session():
    open_ms, mid_ms, close_ms = (14.5 * 3600e3, (14.5 + 3.25) * 3600e3, 20.99 * 3600e3)
    weights = volume_curve(np.array([open_ms, mid_ms, close_ms]))
    assert weights[0] > 2 * weights[1] and weights[2] > 2 * weights[1]


def test_synthetic_paced_run_keeps_the_target_rate():
    src = SyntheticSource(10, rate=2_000, seed=5, duration_s=1.5)
    started = time.monotonic()
    n = sum(1 for _ in src.records())
    elapsed = time.monotonic() - started
    assert 0.8 * 2_000 * elapsed <= n <= 1.2 * 2_000 * elapsed + 200


def test_ticks_helper_yields_contract_messages():
    out = list(ticks(5, symbols=2, seed=9, start_ms=START))
    assert [t.symbol for t in out][:2] and all(t.source == "synthetic" for t in out) and len(out) == 5


@pytest.mark.slow
def test_produce_synthetic_writes_every_tick_once_to_kafka(bootstrap_servers, own_topics, reader, settings):
    stats = produce_synthetic(
        20_000,
        count=6_000,
        symbols=30,
        seed=4,
        paced=False,
        bootstrap=bootstrap_servers,
        topics=own_topics,
        settings=settings,
    )
    assert (stats.accepted, stats.dead_lettered) == (6_000, 0)
    got = reader.read(Topic.TICKS, 6_000)
    assert len({(t["symbol"], t["event_time_ms"]) for t in got}) == 6_000
    assert all(t["_key"] == t["symbol"] and round(t["price"], 2) == t["price"] for t in got)


def _tick_frame(symbol: str, n: int, start: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": [symbol] * n,
            "event_time_ms": [start + 100 * i for i in range(n)],
            "price": [50 + 0.01 * i for i in range(n)],
            "size": [10] * n,
        }
    )


def test_replay_at_10x_takes_a_tenth_of_the_recorded_time(tmp_path):
    path = tmp_path / "ticks.csv"
    _tick_frame("AAPL", 11, START).to_csv(path, index=False)  # 1.0 s recorded
    started = time.monotonic()
    rows = list(ReplaySource(path, speed=10).records())
    assert len(rows) == 11 and 0.08 <= time.monotonic() - started < 0.6


def test_replay_refuses_a_file_without_a_required_column(tmp_path):
    path = tmp_path / "bad.csv"
    _tick_frame("AAPL", 3, START).drop(columns=["price"]).to_csv(path, index=False)
    with pytest.raises(ReplayFileError, match=r"lacks column.*price"):
        ReplaySource(path)


@pytest.mark.slow
def test_replay_parquet_bars_and_csv_ticks_reach_kafka_with_bad_rows_dead_lettered(
    bootstrap_servers, own_topics, reader, settings, unique_symbol, tmp_path
):
    bars = pd.DataFrame(
        {
            "symbol": [unique_symbol] * 3,
            "interval": ["1d"] * 3,
            "event_time_ms": [START, START + 86_400_000, START + 2 * 86_400_000],
            "open": [10.0, 11.0, 12.0],
            "high": [10.5, 11.5, 9.0],
            "low": [9.5, 10.5, 11.5],
            "close": [10.2, 11.2, 12.2],
            "volume": [1e6, 2e6, 3e6],
        }
    )
    bars.to_parquet(tmp_path / "bars.parquet")
    csv = tmp_path / "ticks.csv"
    frame = _tick_frame(unique_symbol, 4, START)
    frame["price"] = frame["price"].astype(object)
    frame.loc[2, "price"] = "oops"
    frame.to_csv(csv, index=False)
    instruments = Instruments([Instrument(unique_symbol)])
    pipeline = build_pipeline(
        Source.REPLAY,
        bootstrap=bootstrap_servers,
        settings=settings,
        instruments=instruments,
        topics=own_topics,
        live=False,
    )
    run_records(pipeline, ReplaySource(tmp_path / "bars.parquet").records(), Source.REPLAY)
    stats = run_records(pipeline, ReplaySource(csv).records(), Source.REPLAY)
    assert (stats.accepted, stats.dead_lettered) == (5, 2)
    got_bars = reader.read(Topic.BARS, 2)
    assert [b["close"] for b in got_bars] == [10.2, 11.2]
    got_ticks = reader.read(Topic.TICKS, 3)
    assert [t["price"] for t in got_ticks] == [50.0, 50.01, 50.03]
    assert sorted(d["reason"] for d in reader.read(Topic.DEADLETTER, 2)) == ["crossed_prices", "wrong_type"]
